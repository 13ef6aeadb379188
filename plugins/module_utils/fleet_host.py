# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.fleet_host module: a managed Docker host as a record of the fleet registry.

The docker_host role calls it for every host: ``pending`` when the host is configured (a new record, with a /24 of
its own for its ``fenrir-fleet`` network, allocated from the fleet range), then what the controller's own probe
proved (``docker_host_result``): ``connected`` with address, endpoint, certificate fingerprint and expiry, engine
version and memory, or ``disconnected`` with the problems; ``decommissioned`` when the host is decommissioned,
which is refused while knarr nodes or tenants live on it.  The host says nothing about itself here: only the
probe's result is recorded.
"""

from __future__ import annotations

import datetime

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import DEFAULT_FLEET_RANGE, Registry
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import (
    registry_argument_spec, registry_location)

NAME = "fleet_host"
REQUIREMENTS = ("cryptography",)
ARGUMENT_SPEC = dict(argument_spec=registry_argument_spec(
    name=dict(type="str", required=True),
    state=dict(type="str", choices=["present", "absent", "query"], default="present"),
    result=dict(type="dict"),
    max_nodes=dict(type="int"),
    subnet=dict(type="str"),
    fleet_range=dict(type="str", default=DEFAULT_FLEET_RANGE),
))
# What the probe proves, and the record's field for it.
RESULT_FIELDS = dict(address="address", endpoint="endpoint", engine_version="engine_version",
                     cert_fingerprint_sha256="cert_fingerprint", memory_bytes="memory_bytes")
PROVEN = ("connected", "disconnected")


def _epoch(value):
    """A certificate's notAfter (``2027-03-02T02:57:21Z``) as seconds since the epoch; numbers pass."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        moment = datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise FleetError("cert_not_after %r is not a time such as 2027-03-02T02:57:21Z" % (value,), field="result")
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def proven_fields(result):
    """The record's fields from a docker_host_result (the controller's probe)."""
    status = result.get("status")
    if status not in PROVEN:
        raise FleetError("result.status must be one of %s (what the controller's probe found), got %r"
                         % (", ".join(PROVEN), status), field="result")
    fields = {field: result.get(key) for key, field in RESULT_FIELDS.items() if result.get(key) not in (None, "")}
    if fields.get("memory_bytes") is not None:
        fields["memory_bytes"] = int(fields["memory_bytes"])
    fields["cert_not_after"] = _epoch(result.get("cert_not_after"))
    fields["status"] = status
    problems = [str(p) for p in result.get("problems") or []]
    fields["reason"] = "; ".join(problems) if problems else None
    return fields


def blockers(reg, name):
    """What still lives on the host, as the role's docker_host_decommission_blockers words it."""
    return (["knarr node %r lives on it" % label for label in reg.live_nodes_on(name)]
            + ["tenant %r lives on it" % t["tenant_id"] for t in reg.live_tenants_on(name)])


def run(params, check_mode=False, diff=False):
    name = params["name"]
    try:
        with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
            before = reg.get_host(name)
            found = blockers(reg, name)
            changed = False
            if params["state"] == "absent":
                if found:
                    raise FleetError("not decommissioned: %s; decommission them first (or set "
                                     "docker_host_decommission_remove: true to have them removed first)"
                                     % "; ".join(found), label=name, kind="host")
                if before is not None:
                    with reg.transaction():
                        changed = reg.decommission_host(name, reason="decommissioned by fenrir.fleet.fleet_host")
            elif params["state"] == "present":
                fields = proven_fields(params["result"]) if params.get("result") else {}
                if params.get("max_nodes") is not None:
                    if params["max_nodes"] < 0:
                        raise FleetError("must be 0 or more", label=name, field="max_nodes", kind="host")
                    fields["max_nodes"] = params["max_nodes"]
                with reg.transaction():
                    if not fields.get("status") and before is not None and before["status"] != "decommissioned":
                        changed = reg.set_host(name, **fields) if fields else False
                    else:
                        changed = reg.ensure_host(name, subnet=params.get("subnet"),
                                                  fleet_range=params["fleet_range"], **fields)[2]
                        if "reason" in fields and fields["reason"] is None:
                            changed = reg.set_host(name, reason=None) or changed
            after = reg.get_host(name)
            nodes, tenants = reg.live_nodes_on(name), reg.live_tenants_on(name)
    except FleetError as exc:
        raise ModuleFailure(str(exc), dict(blockers=locals().get("found") or []))
    out = dict(changed=changed, host=after, blockers=found, nodes=nodes, tenants=tenants,
               registry=registry_location(params["registry"]))
    if diff:
        out["diff"] = dict(before=before if changed else after, after=after)
    return out
