# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.knarr_container module: every node's container made, filled, started and proven alive.

The pipeline of the original skill in one call for the whole fleet: setup-docker (the container, its address,
limits and files), wait-for-boot (the node proves its identity and answers its echo skill) and register-fleet
(the registry records what happened: ``running``, ``online`` or ``failed`` with the reason). The module renders
each node's knarr.toml from the node's settings itself; the address and the identity come from the registry.
"""

from __future__ import annotations

import secrets

from ansible_collections.fenrir.fleet.plugins.module_utils import checkpoints
from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_wire as wire
from ansible_collections.fenrir.fleet.plugins.module_utils import rolling_upgrade
from ansible_collections.fenrir.fleet.plugins.module_utils.container_files import identity_of, read_file
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (
    DockerException, docker_argument_spec, run_with_engine)
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import RUNTIME_SECRETS
from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_hosts import engines_argument_spec
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import secret_values as toml_secrets
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import container_name, validate_label
from ansible_collections.fenrir.fleet.plugins.module_utils.node_containers import (
    NODE_DB_PATH, NodeWork, Reconciler, probe_works, remove_containers)
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import NETWORK_OPTION, NODE_OPTIONS, normalize_node
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    Registry, former_locations, registry_exists)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import (
    REGISTRY_ARGS, registry_location)

NAME = "knarr_container"
REQUIREMENTS = ("docker", "cryptography", "tomli_w")


def argument_spec():
    spec = docker_argument_spec(
        network=dict(NETWORK_OPTION),
        nodes=dict(type="list", elements="dict", options={k: dict(v) for k, v in NODE_OPTIONS.items()}),
        allocations=dict(type="list", elements="dict", default=[]),
        labels=dict(type="list", elements="str"),
        state=dict(type="str", choices=["started", "probed", "absent"], default="started"),
        parallelism=dict(type="int", default=8),
        wait=dict(type="bool", default=True),
        register=dict(type="bool", default=True),
        boot_timeout=dict(type="int", default=60),
        provisioner_db_b64=dict(type="str", no_log=True),
        upgrade_batch=dict(type="raw", default=rolling_upgrade.DEFAULT_BATCH),  # a count, or "N%"
        upgrade_rollback=dict(type="str", choices=list(rolling_upgrade.ROLLBACK_CHOICES), default="batch"),
    )
    spec.update({k: dict(v) for k, v in REGISTRY_ARGS.items()})
    spec.update(engines_argument_spec())  # several engines at once: module_utils/placed_nodes.py
    return dict(argument_spec=spec,
                mutually_exclusive=[("nodes", "labels")],
                required_one_of=[("nodes", "labels")],
                required_if=[("state", "started", ("nodes",)), ("state", "probed", ("nodes",))])


ARGUMENT_SPEC = argument_spec()


def secret_values(params):
    """Secrets in the nodes' knarr.toml overrides (cockpit.auth_token, ...): never in a result."""
    values = set()
    for node in params.get("nodes") or []:
        values |= toml_secrets(node.get("config_overrides"))
    return values


# --------------------------------------------------------------------------- the nodes' work

def _provisioner(reg, params):
    """The controller's knarr identity (a ``knarr_wire.Identity``) and whether the registry changed for it.

    Kept encrypted in the registry: made there on first use, or the operator's own (``provisioner_db_b64``, a
    node.db or a bare 32-byte seed in base64), which replaces the stored one. The seed never leaves this."""
    seed = None
    if params.get("provisioner_db_b64"):
        raw = ident.decode_b64(params["provisioner_db_b64"], field="provisioner_db_b64")
        seed = raw if len(raw) == ident.SEED_SIZE else ident.read_seed(raw, field="provisioner_db_b64")
    seed, changed = reg.ensure_provisioner(seed)
    return wire.Identity(seed), changed


def new_cockpit_token():
    """A node's cockpit token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _cockpit_tokens(reg, labels, planned):
    """label -> the node's cockpit token, kept encrypted in the registry beside its seed (made on first use, in one
    transaction for all the nodes that have none). Nodes only planned (check mode) get a throw-away one."""
    tokens, missing = {}, []
    for label in labels:
        if label in planned:
            tokens[label] = new_cockpit_token()
            continue
        tokens[label] = reg.get_secret(label, "cockpit_token")
        if tokens[label] is None:
            missing.append(label)
    if missing:
        with reg.transaction():
            for label in missing:
                tokens[label] = reg.ensure_secret(label, "cockpit_token", new_cockpit_token)[0]
    return tokens


def provisioner_default(node, provisioner, warnings):
    """A node without ``provisioner_node_id`` names the provisioner's own identity in its [peer_overrides]; one that
    names another is warned about (the proof of life is signed by the registry's)."""
    if node.get("provisioner_node_id") is None:
        node["provisioner_node_id"] = provisioner.node_id
    elif not provisioner.node_id.startswith(node["provisioner_node_id"]):
        warnings.append("node %r: provisioner_node_id %s is not this registry's provisioner identity (%s); "
                        "[peer_overrides] names a key the proof of life is not signed with"
                        % (node["label"], node["provisioner_node_id"], provisioner.node_id))
    return node


def cockpit_tokens(reg, params, nodes, only_planned):
    """The cockpit token of every node with a cockpit (none are made for probing: it renders no file)."""
    if params["state"] == "probed":
        return {}
    return _cockpit_tokens(reg, [n["label"] for n in nodes if n["cockpit_port"]], only_planned)


def _works(reg, params, check_mode, recovered, provisioner, warnings):
    """One NodeWork per node: its normalised settings, the address and identity the registry holds, its cockpit
    token; a node without ``provisioner_node_id`` names the provisioner's own in its [peer_overrides]."""
    planned = {a.get("label"): a for a in params["allocations"]}
    found, seen, only_planned = [], set(), set()
    former = reg.former_locations()
    for raw in params["nodes"]:
        node = provisioner_default(normalize_node(raw, validated=True), provisioner, warnings)
        label = node["label"]
        if label in seen:
            raise FleetError("given twice", label=label, field="label")
        seen.add(label)
        record = reg.get(label)
        shown_id = None
        if record is None or record["status"] == "destroyed" or not record["ip"]:
            plan = planned.get(label) or {}
            if not check_mode or not plan.get("ip"):
                raise FleetError("has no address in the registry %s; reserve one with fenrir.fleet.fleet_registry "
                                 "first" % registry_location(reg.path), label=label, field="label")
            ip, shown_id = plan["ip"], plan.get("node_id")  # check mode: what fleet_registry planned
            only_planned.add(label)
        else:
            ip = record["ip"]
        if node.get("ip") and node["ip"] != ip:
            raise FleetError("%s differs from the address %s the registry holds for it" % (node["ip"], ip),
                             label=label, field="ip")
        seed = reg.get_seed(label) or recovered.get(label)
        if seed is None:
            if not check_mode:
                raise FleetError("the registry holds no identity for it", label=label, field="identity")
            # Check mode: a placeholder seed, nothing is written; diffs show the node id that was planned.
            seed = ident.new_seed()
            only_planned.add(label)
        found.append((node, ip, seed, shown_id))
    tokens = cockpit_tokens(reg, params, [f[0] for f in found], only_planned)
    return [NodeWork(node, ip, seed, reg.path, params["network"], node_id=shown_id,
                     cockpit_token=tokens.get(node["label"]), former=former)
            for node, ip, seed, shown_id in found]


def _recover_identities(reg, client, nodes, check_mode):
    """Nodes with a node id but no seed in the registry (adopted from an older registry): take the seed
    from the node.db in their container when it is that node's identity, and keep it (encrypted)."""
    recovered = {}
    for node in nodes:
        label = node["label"]
        record = reg.get(label)
        if record is None or not record["node_id"] or reg.get_seed(label) is not None:
            continue
        try:
            current = read_file(client.api, container_name(label), NODE_DB_PATH)
        except (DockerException, OSError):
            current = None
        seed = identity_of(current[0]) if current else None
        if seed is None or ident.node_id_from_seed(seed) != record["node_id"]:
            raise FleetError("the registry knows its node id %s but not its identity, and its container %s holds no "
                             "node.db with it; give the node's node.db as knarr_node_db_b64, or decommission the node"
                             % (record["node_id"], container_name(label)), label=label, field="identity")
        recovered[label] = seed
        if not check_mode:
            with reg.transaction():
                reg.ensure_identity(label, seed)
    return recovered


def _record(reg, rec, works, check_mode, register):
    """What happened, for every node, in one registry transaction."""
    with reg.transaction():
        for w in works:
            record = reg.get(w.label)
            if record is None:
                continue
            if record["ip"] != w.ip and not check_mode:
                # Decommissioned (or moved) by another run while this one worked on it: the container this run
                # made must not outlive the record, nor the address be kept.
                touched = not w.failed and w.actions
                w.failed = True
                w.reason = ("its registry record changed while this run worked on it (now %s, address %s); run "
                            "again" % (record["status"], record["ip"]))
                if touched:
                    rec.discard(w)
                w.registry_status = record["status"]
                continue
            if w.failed and w.rolled_back and w.proven:
                # A failed upgrade put back: the node answers on its previous image; the reason says what failed.
                reg.set_fields(w.label, container_id=w.container_id, node_id=w.node_id, status="online",
                               reason=w.reason, **image_fields(w, record))
            elif w.failed:
                # An untouched container that fails its probe is kept (it was not this run's to remove).
                reg.fail(w.label, w.reason, container_removed=w.container_id is None)
                if w.container_id is not None and w.running_image is not None:
                    reg.set_fields(w.label, **image_fields(w, record))
            else:
                changes = dict(container_id=w.container_id, node_id=w.node_id, **image_fields(w, record))
                if w.proven and register:
                    changes.update(status="online", reason=None)
                elif w.changed or record["status"] in ("provisioning", "failed"):
                    # Touched, or not yet up, and not proven here: running until register-fleet proves it.
                    changes.update(status="running", reason=None)
                reg.set_fields(w.label, **changes)
            w.registry_status = reg.get(w.label)["status"]


def image_fields(work, record):
    """The registry's image columns for a node: the image its container runs (reference and id) and, when this run
    replaced a container of another image, that one as the previous."""
    fields = {}
    if work.running_image is not None and work.container_id is not None:
        fields.update(image=work.running_image[0], image_id=work.running_image[1])
    replaced = work.replaced_image
    if replaced is not None and work.running_image is not None and replaced[1] != work.running_image[1]:
        fields.update(previous_image=replaced[0], previous_image_id=replaced[1])
    elif replaced is None and work.reverted and record.get("image_id") != (work.running_image or (None, None))[1]:
        fields.update(previous_image=record.get("image"), previous_image_id=record.get("image_id"))
    return fields


def _register_proven(reg, works):
    """register-fleet: the nodes that proved themselves alive are online (one transaction)."""
    with reg.transaction():
        for w in works:
            if w.failed:
                continue
            record = reg.get(w.label)
            if record["status"] == "destroyed":
                w.failed = True
                w.reason = "the node was decommissioned (by another run?) after it was provisioned; provision it again"
            elif record["status"] != "online":
                reg.set_fields(w.label, status="online", reason=None)
                w.actions.append("register online")
            w.registry_status = reg.get(w.label)["status"]


def start_nodes(params, client, check_mode, diff):
    """state=started (setup-docker, wait-for-boot, register-fleet) and state=probed (the last two only)."""
    warnings = []
    with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
        provisioner, provisioner_changed = _provisioner(reg, params)
        recovered = _recover_identities(reg, client, params["nodes"], check_mode)
        works = _works(reg, params, check_mode, recovered, provisioner, warnings)
        if params["state"] == "probed":
            probe_works(works, params["parallelism"], params["boot_timeout"], identity=provisioner)
            if params["register"]:
                _register_proven(reg, works)
            return _outcome(works, check_mode, None, diff, "answer", provisioner, provisioner_changed, warnings)
        rec = Reconciler(client, check_mode=check_mode, parallelism=params["parallelism"],
                         boot_timeout=params["boot_timeout"], wait=params["wait"], identity=provisioner,
                         upgrade_batch=params.get("upgrade_batch"), upgrade_rollback=params.get("upgrade_rollback"))
        rolling_upgrade.batch_size(params.get("upgrade_batch"), 1)  # refused before anything changes
        problems = [p for p in rec.preflight(works) if not (check_mode and p[1] == "network")]
        if problems:
            raise FleetError("; ".join(str(FleetError(message, label=label, field=field))
                                       for label, field, message in problems))
        rec.run(works)
        checkpoints.reached("before_record")
        _record(reg, rec, works, check_mode, params["register"])
    return _outcome(works, check_mode, rec, diff, "reconciled", provisioner, provisioner_changed, warnings,
                    upgrade=rec.upgrade_report)


def _outcome(works, check_mode, rec, diff, verb, provisioner, provisioner_changed, warnings, upgrade=None):
    failed = [w for w in works if w.failed]
    result = dict(
        changed=any(w.changed for w in works) or provisioner_changed,
        provisioner_node_id=provisioner.node_id,
        warnings=warnings,
        **{RUNTIME_SECRETS: sorted(w.cockpit_token for w in works if w.cockpit_token)},
        nodes=[w.result(check_mode) for w in works],
        failed_nodes=[w.label for w in failed],
        msg=("%d of %d nodes failed: %s" % (len(failed), len(works), "; ".join(
            "%s: %s" % (w.label, w.reason) for w in failed)) if failed else "%d nodes %s" % (len(works), verb)),
    )
    if not warnings:
        result.pop("warnings")  # AnsibleModule deprecates a warnings key; the in-process path drops an empty one
    if upgrade is not None:
        result["upgrade"] = upgrade
        said = rolling_upgrade.summary(upgrade)
        if said:
            result["msg"] = "%s. %s" % (said, result["msg"])
    if diff and rec is not None:
        before, after = {}, {}
        for w in works:
            if w.changed:
                before[w.label], after[w.label] = rec.diff_views(w)
                if w.upgrade is not None and after[w.label] is not None:
                    after[w.label]["upgrade"] = dict(batch=w.batch, from_image=w.upgrade["from_image"],
                                                     to_image=w.upgrade["to_image"])
        if provisioner_changed:
            before["_provisioner"], after["_provisioner"] = None, dict(node_id=provisioner.node_id)
        result["diff"] = dict(before=before, after=after)
    return result


# --------------------------------------------------------------------------- decommission

def remove_nodes(params, client, check_mode, diff):
    """state=absent: every node's container removed (in parallel), then, in one registry transaction, the
    record of each node whose container is gone marked ``destroyed`` and its address freed. A node whose
    container could not be removed keeps its record and is reported failed."""
    labels = list(params["labels"]) if params.get("labels") is not None else [n["label"] for n in params["nodes"]]
    names = {}
    for label in labels:
        name = container_name(validate_label(label, removal=True))
        if name in names:
            raise FleetError("given twice", label=label, field="labels")
        names[name] = label
    outcome = remove_containers(client, sorted(names), check_mode, params["parallelism"],
                                registry_path=registry_location(params["registry"]),
                                former=former_locations(params["registry"]))
    if not check_mode:
        checkpoints.reached("after_remove")
    records = {}
    if registry_exists(params["registry"]):  # no registry, no records
        with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
            with reg.transaction():
                for name, label in sorted(names.items()):
                    if not outcome[name].startswith("error"):
                        records[label] = reg.destroy(label)
    return _removal_result(names, outcome, records, check_mode, diff)


def _record_view(record):
    if record is None:
        return None
    return {k: record[k] for k in ("label", "server_id", "ip", "status", "location", "node_id", "container_id",
                                   "nonce", "reason", "has_identity")}


def _removal_result(names, outcome, records, check_mode, diff):
    nodes, before, after = [], {}, {}
    for name, label in sorted(names.items()):
        error = outcome[name] if outcome[name].startswith("error") else None
        removed = outcome[name] == "removed"
        was, now, destroyed = records.get(label, (None, None, False))
        nodes.append(dict(label=label, server_id=name, removed=removed, destroyed=destroyed, error=error,
                          changed=removed or destroyed, failed=bool(error), reason=error,
                          result=dict(status="error" if error else ("dry_run" if check_mode else "ok"),
                                      ip=(was or {}).get("ip"), server_id=name, provider="docker")))
        if removed or destroyed:
            before[label] = dict(container=name if removed else None, record=_record_view(was))
            after[label] = dict(container=None, record=_record_view(now))
    failed = [n for n in nodes if n["error"]]
    result = dict(changed=bool(before), nodes=nodes, failed_nodes=[n["label"] for n in failed],
                  msg="; ".join("%s: %s" % (n["label"], n["error"]) for n in failed) or
                  "%d containers removed, %d records destroyed" % (sum(n["removed"] for n in nodes),
                                                                   sum(n["destroyed"] for n in nodes)))
    if diff:
        result["diff"] = dict(before=before, after=after)
    return result


def run(params, check_mode=False, diff=False):
    """The module: raises ModuleFailure when the input is refused or any node fails (after handling all)."""
    if params.get("engines"):
        from ansible_collections.fenrir.fleet.plugins.module_utils import placed_nodes
        return placed_nodes.run(params, check_mode, diff)

    def work(client):
        if params["state"] == "absent":
            return remove_nodes(params, client, check_mode, diff)
        return start_nodes(params, client, check_mode, diff)
    result = run_with_engine(params, work, max_pool_size=max(8, params["parallelism"]))
    if result["failed_nodes"]:
        raise ModuleFailure(result.pop("msg"), result)
    return result
