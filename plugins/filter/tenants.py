# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the tenants role: every tenant of the play grouped by Docker engine (validated), and the
modules' results as rows, a table and failures."""

from __future__ import annotations

import copy
import json

from ansible.errors import AnsibleFilterError

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import DOCKER_COMMON_ARGS
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_spec import (
    DEFAULT_PREFIX, normalize_tenant, normalize_tenants, tenant_id_of)
from ansible_collections.fenrir.fleet.plugins.plugin_utils.host_settings import HostSettings

PREFIX = "tenants_"
STATES = ("present", "absent")
# Role variables read once for the play (on the host the run_once tasks run on), never per tenant.
PLAY_SETTINGS = ("prefix", "registry", "bind_address", "parallelism", "start_timeout", "start_settle", "mode", "output",
                 "list", "group")
DOCKER_OPTIONS = tuple(DOCKER_COMMON_ARGS)


def _docker(value, where):
    """A host's (or the play's) tenants_docker: the connection options of its engine."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise AnsibleFilterError("%s, field 'tenants_docker': must be a mapping of connection options (%s)"
                                 % (where, ", ".join(DOCKER_OPTIONS)))
    unknown = sorted(str(k) for k in value if k not in DOCKER_OPTIONS)
    if unknown:
        raise AnsibleFilterError("%s, field 'tenants_docker': unknown option(s) %s; known: %s"
                                 % (where, ", ".join(unknown), ", ".join(DOCKER_OPTIONS)))
    return {k: v for k, v in sorted(value.items()) if v not in (None, "")}


def _spec_error(exc, where):
    return AnsibleFilterError("%s (%s)" % (exc, where))


def _play_settings_agree(hosts, hostvars, play_settings, context_host):
    """A play setting given to some tenant hosts only (say, in the tenants group's vars) would be silently ignored:
    the role reads it once, on the run_once host. Refuse that, naming the setting and the hosts."""
    for var, value in sorted((play_settings or {}).items()):
        name = PREFIX + var
        differ = sorted(h for h in hosts if name in hostvars[h] and hostvars[h][name] != value)
        if differ:
            raise AnsibleFilterError("field %r: a play setting, read once for the whole play (on %s, where it is %r), "
                                     "differs on %s; set it for the play (play vars, group_vars/all or -e), not per "
                                     "host or group" % (name, context_host, value, ", ".join(differ)))


def tenant_batches(hosts, hostvars, context, context_host=None, role_defaults=None, tenants_list=None,
                   prefix=DEFAULT_PREFIX, play_settings=None):
    """Every tenant of the play, validated, grouped by the Docker engine it runs on.

    ``hosts``: the play's hosts of the tenants group -- each is one tenant, ``tenants_spec`` its spec (its
    ``tenant_id`` defaults to the host name), ``tenants_state`` and ``tenants_docker`` its own or the play's;
    ``tenants_list``: specs given to the play (the play's state and engine). ``context``: ``{spec, state,
    docker}`` as the run_once task templates them on ``context_host`` (see HostSettings).

    Returns ``[{engine, docker, present: [specs], absent: [tenant ids]}]``, one per engine, in first-seen
    order. Fails naming the tenant, the field and where it was set when a spec is bad, a tenant id is given
    twice, or two tenants on one engine publish the same host port; and when a play setting (``play_settings``:
    prefix, registry, ... as the run_once task sees them) differs on some tenant host.
    """
    settings = HostSettings(hostvars, context, context_host, role_defaults, prefix=PREFIX)
    _play_settings_agree(hosts or [], settings.hostvars, play_settings, context_host)
    entries = []  # (where, state, docker, raw spec)
    for host in hosts or []:
        where = "host %s" % host
        state = settings.get(host, "state")
        raw = settings.get(host, "spec") or {}
        if not isinstance(raw, dict):
            raise AnsibleFilterError("%s, field 'tenants_spec': must be a tenant spec (a mapping in the seed's shape)"
                                     % where)
        raw = dict(raw)
        raw.setdefault("tenant_id", host)
        entries.append((where + " (variable tenants_spec)", state, _docker(settings.get(host, "docker"), where), raw))
    play_state = settings.play_value("state", hosts or [])
    play_docker = _docker(settings.play_value("docker", hosts or []), "the play")
    if not isinstance(tenants_list or [], list):
        raise AnsibleFilterError("field 'tenants_list': must be a list of tenant specs")
    for i, raw in enumerate(tenants_list or []):
        entries.append(("tenants_list[%d]" % i, play_state, play_docker, raw))

    batches, seen = {}, {}
    for where, state, docker, raw in entries:
        if state not in STATES:
            raise AnsibleFilterError("%s, field 'tenants_state': %r is not one of present, absent" % (where, state))
        try:
            tid = tenant_id_of(raw, prefix) if state == "absent" else normalize_tenant(raw, prefix)["tenant_id"]
        except SpecError as exc:
            raise _spec_error(exc, where)
        if tid in seen:
            raise AnsibleFilterError("tenant %r, field 'tenant_id': given twice (%s and %s)" % (tid, seen[tid], where))
        seen[tid] = where
        key = json.dumps(docker, sort_keys=True)
        batch = batches.setdefault(key, dict(engine=docker.get("docker_host") or "default engine", docker=docker,
                                             present=[], absent=[]))
        if state == "absent":
            batch["absent"].append(tid)
        else:
            batch["present"].append(copy.deepcopy(dict(raw, tenant_id=tid)))
    for batch in batches.values():  # host ports: unique per engine
        try:
            normalize_tenants(batch["present"], prefix)
        except SpecError as exc:
            raise _spec_error(exc, "on %s" % batch["engine"])
    return list(batches.values())


def tenant_rows(results):
    """One row per tenant from registered results of fenrir.fleet.tenant / tenant_info (a loop's ``results``
    or single results), each with the engine it is on."""
    rows = []
    for result in _results(results):
        for t in list(result.get("removed") or []) + list(result.get("tenants") or []):
            row = dict(t)
            row.setdefault("docker_host", result.get("docker_host"))
            rows.append(row)
    return rows


def tenant_failures(results):
    """What went wrong, one message per failed call or tenant (empty when nothing did)."""
    out = []
    for result in _results(results):
        if "tenants" not in result:
            out.append(result.get("msg") or "the tenant module failed")
        elif result.get("failed_tenants"):
            out.append(result.get("msg") or "failed: %s" % ", ".join(result["failed_tenants"]))
    return out


def _results(results):
    if isinstance(results, dict):
        results = results.get("results", [results])
    return [r for r in results or [] if isinstance(r, dict) and not r.get("skipped")]


def _ports_text(ports):
    shown = []
    for p in ports or []:
        inside = "%s/%s" % (p.get("container_port"), p.get("protocol") or "tcp")
        if p.get("host_port"):
            shown.append("%s:%s->%s" % (p.get("host_ip") or "*", p["host_port"], inside))
        else:
            shown.append(inside)
    return ", ".join(shown) or "-"


def tenant_table(rows):
    """The rows as an aligned table (a list of lines), as an operator reads it."""
    columns = (("TENANT", lambda r: r.get("tenant_id")), ("STATUS", lambda r: r.get("status")),
               ("HEALTH", lambda r: r.get("health")), ("EXIT", lambda r: r.get("exit_code")),
               ("CPU", lambda r: "%sm" % r["cpu"] if r.get("cpu") else None),
               ("MEM", lambda r: "%sMB" % r["memory"] if r.get("memory") else None),
               ("PORTS", lambda r: _ports_text(r.get("ports")) if "ports" in r else None),
               ("ENGINE", lambda r: r.get("docker_host")),
               ("DONE", lambda r: "; ".join(r.get("actions") or (["remove"] if r.get("removed") else [])) or None),
               ("REASON", lambda r: r.get("reason")))
    cells = [[title for title, dummy in columns]]
    for row in rows or []:
        cells.append(["-" if get(row) in (None, "") else str(get(row)) for dummy, get in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells]
    counts = {}
    for row in rows or []:
        counts[row.get("status")] = counts.get(row.get("status"), 0) + 1
    lines.append("%d tenant(s): %s" % (len(rows or []), ", ".join("%d %s" % (n, s) for s, n in sorted(
        counts.items(), key=lambda i: str(i[0]))) or "none"))
    return lines


class FilterModule:
    def filters(self):
        return dict(tenant_batches=tenant_batches, tenant_rows=tenant_rows, tenant_failures=tenant_failures,
                    tenant_table=tenant_table)
