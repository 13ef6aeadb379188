# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.fleet_registry module: node records in the fleet registry -- addresses, identities, statuses.

Every call is one registry transaction: all the nodes given are reserved (or updated, or destroyed) together.
"""

from __future__ import annotations

import time

from ansible_collections.fenrir.fleet.plugins.module_utils import checkpoints
from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import validate_label
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import (
    pool_addresses, pool_argument_spec, registry_argument_spec, registry_location)

NAME = "fleet_registry"
REQUIREMENTS = ("cryptography",)
STATUS_CHOICES = ["provisioning", "running", "online", "failed"]
RECORD_OPTIONS = dict(
    ip=dict(type="str"),
    location=dict(type="str"),
    nonce=dict(type="str"),
    server_id=dict(type="str"),
    provider=dict(type="str", default="docker"),
    node_db_b64=dict(type="str", no_log=True),
    status=dict(type="str", choices=STATUS_CHOICES),
    reason=dict(type="str"),
    node_id=dict(type="str"),
    container_id=dict(type="str"),
)
NODE_FIELDS = ("label",) + tuple(RECORD_OPTIONS)


def argument_spec():
    node_options = dict(label=dict(type="str", required=True), **{k: dict(v) for k, v in RECORD_OPTIONS.items()})
    spec = registry_argument_spec(
        nodes=dict(type="list", elements="dict", options=node_options),
        labels=dict(type="list", elements="str"),
        label=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        identity=dict(type="bool", default=True),
        **{k: dict(v) for k, v in RECORD_OPTIONS.items()}
    )
    spec.update(pool_argument_spec())
    return dict(argument_spec=spec,
                mutually_exclusive=[("label", "nodes", "labels")],
                required_one_of=[("label", "nodes", "labels")])


ARGUMENT_SPEC = argument_spec()


def _pool(params):
    return Pool(*pool_addresses(params))


def _node_list(params):
    if params.get("nodes") is not None:
        nodes = [dict(n) for n in params["nodes"]]
    elif params.get("labels") is not None:
        nodes = [dict(label=label, status=params.get("status"), reason=params.get("reason"))
                 for label in params["labels"]]
    else:
        nodes = [{k: params.get(k) for k in NODE_FIELDS}]
    seen = set()
    for n in nodes:
        validate_label(n.get("label"), removal=params.get("state") == "absent")
        if n["label"] in seen:
            raise FleetError("given twice", label=n["label"], field="label")
        seen.add(n["label"])
    return nodes


def _diff_view(record):
    if record is None:
        return None
    return {k: record[k] for k in ("label", "server_id", "ip", "status", "location", "node_id", "container_id",
                                   "nonce", "reason", "has_identity")}


def _check_requests(nodes, state, pool):
    """Everything that can be refused before the registry is touched (or its file created)."""
    seeds = {}
    for n in nodes:
        label = n["label"]
        if n.get("node_db_b64"):
            seeds[label] = ident.seed_from_b64(n["node_db_b64"], label)
        if n.get("node_id") is not None and not (isinstance(n["node_id"], str) and len(n["node_id"]) == 64):
            raise FleetError("must be a 64-character hex node id", label=label, field="node_id")
        if n.get("ip") and state != "absent":
            pool.check_pinned(n["ip"], label)
    return seeds


def _update_status(reg, n, check_mode, after_all):
    """labels=: the status of existing nodes only (no allocation, no identity). Returns (before, after, changed)."""
    label = n["label"]
    before = reg.get(label)
    if before is None and check_mode:
        # Check mode: the node's allocation was only planned; it would be updated.
        after_all[label] = dict(label=label, status=n.get("status"))
        return None, None, True
    if before is None:
        raise FleetError("is not in the registry %s" % reg.path, label=label, field="labels")
    if before["status"] == "destroyed" and n.get("status") in ("running", "online"):
        raise FleetError("the node was decommissioned (by another run?) after it was provisioned; provision it "
                         "again", label=label, field="status")
    updates = {k: n[k] for k in ("status", "reason") if n.get(k) is not None}
    if n.get("status") == "online":
        updates["reason"] = None
        if before["status"] != "online":
            updates.update(last_seen=time.time(), report_received_at=time.time())
    changed = reg.set_fields(label, **updates) if updates else False
    return before, reg.get(label), changed


def _reserve(reg, n, pool, seeds, want_identity):
    """state=present: an address and an identity for the node. Returns (before, after, changed)."""
    label = n["label"]
    before, after, changed = reg.ensure(n, pool)
    adopted = label not in seeds and after["node_id"] is not None and reg.get_seed(label) is None
    # A node adopted from an older registry has a node id but no seed here: its identity is in its container,
    # and fenrir.fleet.knarr_container takes it from there. Never replace it.
    if (want_identity and not adopted) or label in seeds:
        seed, id_changed = reg.ensure_identity(label, seeds.get(label), ident.new_seed)
        node_id = ident.node_id_from_seed(seed)
        if reg.get(label)["node_id"] != node_id and n.get("node_id") in (None, node_id):
            n = dict(n, node_id=node_id)
        changed = changed or id_changed
    updates = {k: n[k] for k in ("status", "reason", "node_id", "container_id") if n.get(k) is not None}
    if n.get("status") == "online":
        updates.setdefault("reason", None)
    if updates:
        if n.get("status") == "online" and reg.get(label)["status"] != "online":
            now = time.time()
            updates.update(last_seen=now, report_received_at=now)
        changed = reg.set_fields(label, **updates) or changed
    return before, reg.get(label), changed


def run(params, check_mode=False, diff=False):
    """Reserve, update or destroy registry records (one label or many); raises ModuleFailure."""
    try:
        pool = _pool(params)
        nodes = _node_list(params)
        state = params["state"]
        seeds = _check_requests(nodes, state, pool)
        results, before_all, after_all = [], {}, {}
        changed = False
        with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
            with reg.transaction():
                for n in nodes:
                    if state == "absent":
                        before, after, ch = reg.destroy(n["label"], reason=n.get("reason"))
                    elif params.get("labels") is not None:
                        before, after, ch = _update_status(reg, n, check_mode, after_all)
                    else:
                        before, after, ch = _reserve(reg, n, pool, seeds, params["identity"])
                    changed = changed or ch
                    if after is not None:
                        results.append(after)
                    if ch and after is not None:
                        before_all[n["label"]] = _diff_view(before)
                        after_all[n["label"]] = _diff_view(after)
        if changed and not check_mode and state == "present" and params.get("labels") is None:
            checkpoints.reached("after_allocate")
    except FleetError as exc:
        raise ModuleFailure(str(exc))
    out = dict(changed=changed, nodes=results, pool=pool.as_dict(), registry=registry_location(params["registry"]))
    if diff:
        out["diff"] = dict(before=before_all, after=after_all)
    if params.get("label") is not None:
        out["node"] = results[0] if results else None
    return out
