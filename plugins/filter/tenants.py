# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the tenants role: every host's tenant settings into one plan (validated, tenants grouped by Docker
engine), and the modules' results as rows, a table and failures."""

from __future__ import annotations

import copy
import json

from ansible.errors import AnsibleFilterError

from ansible_collections.fenrir.fleet.plugins.module_utils import tenant as tenant_module
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_options import DOCKER_COMMON_ARGS
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_spec import (
    normalize_tenant, normalize_tenants, tenant_id_of)
from ansible_collections.fenrir.fleet.plugins.plugin_utils.plan_errors import plan_or_error

PREFIX = "tenants_"
STATES = ("present", "absent")
# Each tenant host's own (Ansible's precedence decides what each host gets); tenants_list's tenants take the
# play's value (see _list_value).
HOST_SETTINGS = ("spec", "state", "docker")
# Read once for the whole play: every host of the play must see the same value.
PLAY_SETTINGS = ("group", "list", "mode", "output", "registry", "registry_key_file", "prefix", "bind_address",
                 "parallelism", "start_timeout", "start_settle")
# Set by the role (its output), not given to it.
ROLE_OUTPUT = ("results",)
# Role variables that are options of fenrir.fleet.tenant (with that option's name): unset, the module's default.
MODULE_OPTIONS = dict(registry="registry", registry_key_file="key_file", prefix="prefix", bind_address="bind_address",
                      parallelism="parallelism", start_timeout="start_timeout", start_settle="start_settle")
DOCKER_OPTIONS = tuple(DOCKER_COMMON_ARGS)
DEFAULT_GROUP = "tenants"


def module_default(name):
    """The default of a role variable's module option (the one place it is written)."""
    return tenant_module.ARGUMENT_SPEC["argument_spec"][MODULE_OPTIONS[name]].get("default")


def _fail(where, name, message):
    raise AnsibleFilterError("%s, variable %s%s: %s" % (where, PREFIX, name, message))


def _same(value):
    return json.dumps(value, sort_keys=True, default=str)


def _agreed(by_host, hosts, name, why):
    """The one value ``hosts`` have for ``name`` (None when unset everywhere); refuses when they differ, naming the
    variable and the hosts."""
    seen = {}
    for host in hosts:
        seen.setdefault(_same(by_host[host].get(name)), (host, by_host[host].get(name)))
    if len(seen) > 1:
        shown = ", ".join("host %s has %r" % (host, value) for host, value in sorted(seen.values(), key=lambda i: i[0]))
        raise AnsibleFilterError("variable %s%s: %s, differs between the play's hosts (%s); set it for the play (play "
                                 "vars, group_vars/all or -e), not per host or group" % (PREFIX, name, why, shown))
    return next(iter(seen.values()))[1] if seen else None


def _docker(value, where):
    """A host's (or the play's) tenants_docker: the connection options of its engine."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        _fail(where, "docker", "must be a mapping of connection options (%s)" % ", ".join(DOCKER_OPTIONS))
    unknown = sorted(str(k) for k in value if k not in DOCKER_OPTIONS)
    if unknown:
        _fail(where, "docker", "unknown option(s) %s; known: %s" % (", ".join(unknown), ", ".join(DOCKER_OPTIONS)))
    return {k: v for k, v in sorted(value.items()) if v not in (None, "")}


def tenant_plan(settings, hosts, groups=None, errors="fail"):
    """Every host's tenant settings (its ``tenants_*`` variables as Ansible resolved them for that host, without
    the prefix, in the order of ``hosts``) into one plan for the play.

    The hosts of ``tenants_group`` (found in ``groups``) are tenants: each its own ``tenants_spec`` (its
    ``tenant_id`` defaulting to the host name), ``tenants_state`` and ``tenants_docker``. ``tenants_list`` adds
    tenants given to the play; they take the play's ``tenants_state`` and ``tenants_docker`` -- the value every
    play host that is not a tenant has (every host, when all are tenants). Play settings (PLAY_SETTINGS) must be
    the same on every host.

    Returns ``{batches: [{engine, docker, present: [specs], absent: [tenant ids]}] (one per engine, in
    first-seen order), docker: the play's connection options, tenants: how many, play: the play settings that
    are set (tenants_list aside)}``. Fails naming the tenant,
    the field, the host and the variable when a spec is bad, a tenant id is given twice, two tenants on one
    engine publish the same host port; naming the variable and the hosts when a play setting differs. With
    ``errors='return'`` the failure is returned as ``{"error": message}`` (see plan_errors).
    """
    return plan_or_error(_tenant_plan, errors, list(settings), list(hosts), groups)


def _tenant_plan(settings, hosts, groups):
    if len(settings) != len(hosts):
        raise AnsibleFilterError("tenant_plan: %d settings for %d hosts" % (len(settings), len(hosts)))
    by_host = dict(zip(hosts, settings))
    known = set(HOST_SETTINGS) | set(PLAY_SETTINGS) | set(ROLE_OUTPUT)
    for host, values in by_host.items():
        unknown = sorted(set(values or {}) - known)
        if unknown:
            _fail("host %s" % host, unknown[0], "not a variable of the tenants role (a typo?)")
    play = {name: _agreed(by_host, hosts, name, "a play setting, read once for the whole play")
            for name in PLAY_SETTINGS}
    prefix = play["prefix"] or module_default("prefix")
    members = set((groups or {}).get(play["group"] or DEFAULT_GROUP) or [])
    tenant_hosts = [h for h in hosts if h in members]
    others = [h for h in hosts if h not in members] or hosts

    entries = []  # (where, state, docker, raw spec)
    for host in tenant_hosts:
        values, where = by_host[host], "host %s" % host
        state = values.get("state", "present")
        if state not in STATES:
            _fail(where, "state", "%r is not one of %s" % (state, ", ".join(STATES)))
        raw = values.get("spec")
        if raw is None and state == "present":
            _fail(where, "spec", "a tenant host needs its spec (the seed's shape), or tenants_state: absent")
        if raw is not None and not isinstance(raw, dict):
            _fail(where, "spec", "must be a tenant spec (a mapping in the seed's shape)")
        raw = dict(raw or {})
        raw.setdefault("tenant_id", host)
        entries.append((where + ", variable tenants_spec", state, _docker(values.get("docker"), where), raw))
    tenants_list = play["list"] or []
    if not isinstance(tenants_list, list):
        _fail("the play", "list", "must be a list of tenant specs")
    play_docker = {}
    if tenants_list or not tenant_hosts:
        why = "the engine of the tenants of tenants_list (and of the status when there are none)"
        play_docker = _docker(_agreed(by_host, others, "docker", why), "the play")
    if tenants_list:
        list_state = _agreed(by_host, others, "state", "the state of the tenants of tenants_list") or "present"
        if list_state not in STATES:
            _fail("the play", "state", "%r is not one of %s" % (list_state, ", ".join(STATES)))
        for i, raw in enumerate(tenants_list):
            entries.append(("variable tenants_list[%d]" % i, list_state, play_docker, raw))

    batches, seen = {}, {}
    for where, state, docker, raw in entries:
        try:
            tid = tenant_id_of(raw, prefix) if state == "absent" else normalize_tenant(raw, prefix)["tenant_id"]
        except SpecError as exc:
            raise AnsibleFilterError("%s (%s)" % (exc, where))
        if tid in seen:
            raise AnsibleFilterError("tenant %r, field 'tenant_id': given twice (%s and %s)" % (tid, seen[tid], where))
        seen[tid] = where
        batch = batches.setdefault(_same(docker), dict(engine=docker.get("docker_host") or "default engine",
                                                       docker=docker, present=[], absent=[]))
        if state == "absent":
            batch["absent"].append(tid)
        else:
            batch["present"].append(copy.deepcopy(dict(raw, tenant_id=tid)))
    for batch in batches.values():  # host ports: unique per engine
        try:
            normalize_tenants(batch["present"], prefix)
        except SpecError as exc:
            raise AnsibleFilterError("%s (on %s)" % (exc, batch["engine"]))
    shown = {name: value for name, value in play.items() if name != "list" and value is not None}
    return dict(batches=list(batches.values()), docker=play_docker, tenants=len(seen), play=shown)


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
        return dict(tenant_plan=tenant_plan, tenant_rows=tenant_rows, tenant_failures=tenant_failures,
                    tenant_table=tenant_table)
