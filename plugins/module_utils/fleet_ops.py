# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the fenrir.fleet modules do, without Ansible: each function takes plain params and returns
a result dict (changed, diff, ...) or raises FleetError with a message naming the node and field.
"""

from __future__ import annotations

import os
import time

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, SpecError
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import normalize_spec
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import container_name, validate_label
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import DockerException
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    Pool, Registry, RegistryError, registry_exists, registry_id)

NODE_FIELDS = ("label", "ip", "location", "nonce", "server_id", "provider", "node_db_b64",
               "status", "reason", "node_id", "container_id")


def _pool(params):
    return Pool(params.get("subnet") or "172.21.0.0/24", params.get("gateway") or "172.21.0.1",
                params.get("pool_start") or "172.21.0.10", params.get("pool_end") or "172.21.0.249")


def _node_list(params):
    if params.get("nodes") is not None:
        nodes = [dict(n) for n in params["nodes"]]
    elif params.get("labels") is not None:
        nodes = [dict(label=label, status=params.get("status"), reason=params.get("reason"))
                 for label in params["labels"]]
    elif params.get("label") is not None:
        nodes = [{k: params.get(k) for k in NODE_FIELDS}]
    else:
        raise FleetError("one of label, labels or nodes is required")
    seen = set()
    for n in nodes:
        validate_label(n.get("label"), removal=params.get("state") == "absent")
        if n["label"] in seen:
            raise FleetError("node %r, field 'label': given twice" % n["label"])
        seen.add(n["label"])
    return nodes


def _diff_view(record):
    if record is None:
        return None
    return {k: record[k] for k in ("label", "server_id", "ip", "status", "location", "node_id", "container_id",
                                   "nonce", "reason", "has_identity")}


def registry_node(params, check_mode):
    """The fleet_node module: reserve, update or destroy registry records (one label or many)."""
    try:
        pool = _pool(params)
        nodes = _node_list(params)
        state = params.get("state") or "present"
        # Validate every seed before touching anything.
        seeds = {}
        for n in nodes:
            if n.get("node_db_b64"):
                seeds[n["label"]] = ident.seed_from_b64(n["node_db_b64"], n["label"])
            if n.get("status") == "destroyed":
                raise FleetError("node %r, field 'status': use state=absent to destroy a node" % n["label"])
            if n.get("node_id") is not None and not (isinstance(n["node_id"], str) and len(n["node_id"]) == 64):
                raise FleetError("node %r, field 'node_id': must be a 64-character hex node id" % n["label"])
            if n.get("ip") and state != "absent":
                pool.check_pinned(n["ip"], n["label"])  # refused before the registry file is created
        results, before_all, after_all = [], {}, {}
        changed = False
        with Registry(params["db"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
            with reg.transaction():
                for n in nodes:
                    label = n["label"]
                    if state == "absent":
                        before, after, ch = reg.destroy(label, reason=n.get("reason"))
                    elif params.get("labels") is not None:
                        # Status of existing nodes only: no allocation, no identity.
                        before = reg.get(label)
                        if before is None and check_mode:
                            # Check mode: the node's allocation was only planned; it would be updated.
                            changed = True
                            after_all[label] = dict(label=label, status=n.get("status"))
                            continue
                        if before is None:
                            raise FleetError("node %r, field 'labels': is not in the registry %s" % (label, reg.path))
                        if before["status"] == "destroyed" and n.get("status") in ("running", "online"):
                            raise FleetError("node %r, field 'status': the node was decommissioned (by another run?) "
                                             "after it was provisioned; provision it again" % label)
                        updates = {k: n[k] for k in ("status", "reason") if n.get(k) is not None}
                        if n.get("status") == "online":
                            updates["reason"] = None
                            if before["status"] != "online":
                                updates.update(last_seen=time.time(), report_received_at=time.time())
                        ch = reg.set_fields(label, **updates) if updates else False
                        after = reg.get(label)
                    else:
                        before, after, ch = reg.ensure(n, pool)
                        adopted = label not in seeds and after["node_id"] is not None and reg.get_seed(label) is None
                        # A node adopted from an older registry has a node id but no seed here: its identity is
                        # in its container, and fenrir.fleet.knarr_container takes it from there. Never replace it.
                        if (params.get("identity", True) and not adopted) or label in seeds:
                            _seed, id_changed = reg.ensure_identity(label, seeds.get(label), ident.new_seed)
                            node_id = ident.node_id_from_seed(_seed)
                            if (reg.get(label)["node_id"] != node_id) and n.get("node_id") in (None, node_id):
                                n = dict(n, node_id=node_id)
                            ch = ch or id_changed
                        updates = {k: n[k] for k in ("status", "reason", "node_id", "container_id")
                                   if n.get(k) is not None}
                        if n.get("status") == "online":
                            updates.setdefault("reason", None)
                        if updates:
                            if n.get("status") == "online" and reg.get(label)["status"] != "online":
                                now = time.time()
                                updates.update(last_seen=now, report_received_at=now)
                            ch = reg.set_fields(label, **updates) or ch
                        after = reg.get(label)
                    changed = changed or ch
                    if after is not None:
                        results.append(after)
                    if ch:
                        before_all[label] = _diff_view(before)
                        after_all[label] = _diff_view(after)
        if changed and not check_mode and state == "present" and params.get("labels") is None:
            from ansible_collections.fenrir.fleet.plugins.module_utils.containers import fault_point
            fault_point("after_allocate")
        out = dict(changed=changed, nodes=results, pool=pool.as_dict(), db=registry_id(params["db"]),
                   diff=dict(before=before_all, after=after_all))
        if params.get("label") is not None:
            out["node"] = results[0] if results else None
        return out
    except (RegistryError, ident.IdentityError, SpecError) as exc:
        raise FleetError(str(exc))


def audit_verify(params):
    try:
        with Registry(params["db"], key_file=params.get("key_file"), check_mode=True) as reg:
            return reg.verify()
    except RegistryError as exc:
        raise FleetError(str(exc))


# --------------------------------------------------------------------------- containers

def _works(reg, raw_nodes, check_mode, need_files=True, recovered=None):
    from ansible_collections.fenrir.fleet.plugins.module_utils.containers import NodeWork
    from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import ECHO_SOURCE, CONFIG_DIR
    works = []
    for raw in raw_nodes:
        raw = dict(raw)
        toml_text = raw.pop("knarr_toml", None)
        planned_id = raw.pop("node_id", None)  # check mode: the node id fleet_node planned
        spec = normalize_spec({k: v for k, v in raw.items() if k != "node_db_b64"})
        label = spec["label"]
        if need_files and (not isinstance(toml_text, str) or not toml_text.strip()):
            raise FleetError("node %r, field 'knarr_toml': the rendered knarr.toml is required" % label)
        record = reg.get(label)
        if record is None or record["status"] == "destroyed" or not record["ip"]:
            if not check_mode or not spec.get("ip"):
                raise FleetError("node %r, field 'label': has no address in the registry %s; allocate it with "
                                 "fenrir.fleet.fleet_node first" % (label, reg.path))
            record = dict(record or {}, ip=spec["ip"])  # check mode: the address fleet_node planned
        elif spec.get("ip") and spec["ip"] != record["ip"]:
            raise FleetError("node %r, field 'ip': %s differs from the address %s the registry holds for it"
                             % (label, spec["ip"], record["ip"]))
        seed = reg.get_seed(label) or (recovered or {}).get(label)
        shown_id = None
        if seed is None:
            if not check_mode:
                raise FleetError("node %r, field 'identity': the registry holds no identity for it" % label)
            # Check mode: a placeholder seed, nothing is written; diffs show the node id that was planned.
            seed, shown_id = ident.new_seed(), planned_id
        files = {
            CONFIG_DIR + "/knarr.toml": ((toml_text or "").encode("utf-8"), 0o644),
            CONFIG_DIR + "/skills/echo.py": ((spec.get("echo_source") or ECHO_SOURCE).encode("utf-8"), 0o644),
        }
        works.append(NodeWork(spec, record["ip"], files, seed, reg.path, node_id=shown_id))
    return works


def remove_node_containers(params, client, check_mode):
    """knarr_container state=absent: decommission nodes.

    Removes every node's container (in parallel), then, in one registry transaction, marks the record
    of each node whose container is gone ``destroyed`` and frees its address. A node whose container
    could not be removed keeps its record and is reported failed.
    """
    from ansible_collections.fenrir.fleet.plugins.module_utils.containers import remove_containers
    if params.get("labels") is not None:
        labels = list(params["labels"])
    else:
        labels = [raw.get("label") for raw in params["nodes"]]
    names = {}
    try:
        for label in labels:
            name = container_name(validate_label(label, removal=True))
            if name in names:
                raise FleetError("node %r, field 'label': given twice" % label)
            names[name] = label
    except SpecError as exc:
        raise FleetError(str(exc))
    outcome = remove_containers(client, sorted(names), check_mode, params.get("parallelism") or 8,
                                registry_path=registry_id(params["registry"]))
    if not check_mode:
        from ansible_collections.fenrir.fleet.plugins.module_utils.containers import fault_point
        fault_point("after_remove")
    records = {}
    try:
        if not registry_exists(params["registry"]):
            return _removal_result(names, outcome, records, check_mode)  # no registry, no records
        with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
            with reg.transaction():
                for name, label in sorted(names.items()):
                    if not outcome[name].startswith("error"):
                        records[label] = reg.destroy(label)
    except RegistryError as exc:
        raise FleetError(str(exc))
    return _removal_result(names, outcome, records, check_mode)


def _removal_result(names, outcome, records, check_mode):
    nodes, before, after = [], {}, {}
    for name, label in sorted(names.items()):
        error = outcome[name] if outcome[name].startswith("error") else None
        removed = outcome[name] == "removed"
        was, now, destroyed = records.get(label, (None, None, False))
        nodes.append(dict(label=label, server_id=name, removed=removed, destroyed=destroyed, error=error,
                          result=dict(status="error" if error else ("dry_run" if check_mode else "ok"),
                                      ip=(was or {}).get("ip"), server_id=name, provider="docker")))
        if removed or destroyed:
            before[label] = dict(container=name if removed else None, record=_diff_view(was))
            after[label] = dict(container=None, record=_diff_view(now))
    failed = [n for n in nodes if n["error"]]
    return dict(changed=bool(before), nodes=nodes, failed_nodes=[n["label"] for n in failed],
                diff=dict(before=before, after=after),
                msg="; ".join("%s: %s" % (n["label"], n["error"]) for n in failed) or
                "%d containers removed, %d records destroyed" % (sum(n["removed"] for n in nodes),
                                                                  sum(n["destroyed"] for n in nodes)))


def _recover_identities(reg, client, raw_nodes, check_mode):
    """Nodes with a node id but no seed in the registry (adopted from an older registry): take the seed
    from the node.db in their container when it is that node's identity, and keep it (encrypted)."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.containers import NODE_DB_PATH, identity_of, read_file
    recovered = {}
    for raw in raw_nodes:
        label = raw.get("label")
        record = reg.get(label) if isinstance(label, str) else None
        if record is None or not record["node_id"] or reg.get_seed(label) is not None:
            continue
        try:
            current = read_file(client.api, container_name(label), NODE_DB_PATH)
        except (DockerException, OSError):
            current = None
        seed = identity_of(current[0]) if current else None
        if seed is None or ident.node_id_from_seed(seed) != record["node_id"]:
            raise FleetError("node %r, field 'identity': the registry knows its node id %s but not its identity, and "
                             "its container fenrir-%s holds no node.db with it; give the node's node.db as "
                             "knarr_node_db_b64, or decommission the node" % (label, record["node_id"], label))
        recovered[label] = seed
        if not check_mode:
            with reg.transaction():
                reg.ensure_identity(label, seed)
    return recovered


def reconcile_containers(params, client, check_mode):
    """The knarr_container module: make every node's container match, start it, wait for its echo.

    With state=probed nothing is changed: each node is only waited for (wait-for-boot)."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.containers import Reconciler, probe_works
    if params.get("state") == "absent":
        return remove_node_containers(params, client, check_mode)
    try:
        with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
            recovered = _recover_identities(reg, client, params["nodes"], check_mode)
            works = _works(reg, params["nodes"], check_mode, need_files=params.get("state") != "probed",
                           recovered=recovered)
            seen = set()
            for w in works:
                if w.label in seen:
                    raise FleetError("node %r, field 'label': given twice" % w.label)
                seen.add(w.label)
            if params.get("state") == "probed":
                probe_works(works, params.get("parallelism") or 8, params.get("boot_timeout") or 60)
                failed = [w for w in works if w.failed]
                return dict(changed=False, nodes=[w.result() for w in works], failed_nodes=[w.label for w in failed],
                            msg="; ".join(w.reason for w in failed) or "%d nodes answer" % len(works))
            rec = Reconciler(client, check_mode=check_mode, parallelism=params.get("parallelism") or 8,
                             boot_timeout=params.get("boot_timeout") or 60, wait=params.get("wait", True))
            problems = rec.preflight(works) if not check_mode else [
                p for p in rec.preflight(works) if p[1] != "network"]
            if problems:
                raise FleetError("; ".join("node %r, field %r: %s" % p for p in problems))
            rec.run(works)
            from ansible_collections.fenrir.fleet.plugins.module_utils.containers import fault_point
            fault_point("before_record")
            # Record what happened, for every node, in one registry transaction.
            with reg.transaction():
                for w in works:
                    record = reg.get(w.label)
                    if record is None:
                        continue
                    if record["ip"] != w.ip and not check_mode:
                        # Decommissioned (or moved) by another run while this one worked on it: the
                        # container this run made must not outlive the record, nor the address be kept.
                        touched = not w.failed and w.actions
                        w.failed = True
                        w.reason = ("node %s: its registry record changed while this run worked on it (now %s, "
                                    "address %s); run again" % (w.label, record["status"], record["ip"]))
                        if touched:
                            rec._remove_failed(w)
                        w.registry_status = record["status"]
                        continue
                    if w.failed:
                        # An untouched container that fails its probe is kept (it was not this run's to remove).
                        reg.fail(w.label, w.reason, container_removed=w.container_id is None)
                    else:
                        changes = dict(container_id=w.container_id, node_id=w.node_id)
                        # A node this run touched, or one not yet up, is running until register-fleet
                        # marks it online; an untouched online node stays online.
                        if w.changed or record["status"] in ("provisioning", "failed"):
                            changes.update(status="running", reason=None)
                        reg.set_fields(w.label, **changes)
                    w.registry_status = reg.get(w.label)["status"]
    except (RegistryError, SpecError, ident.IdentityError) as exc:
        raise FleetError(str(exc))
    results = [w.result(check_mode) for w in works]
    changed = any(w.changed for w in works)
    failed = [w for w in works if w.failed]
    before, after = {}, {}
    if params.get("_diff"):
        for w in works:
            if w.changed:
                before[w.label], after[w.label] = rec.diff_views(w)
    return dict(
        changed=changed,
        nodes=results,
        failed_nodes=[w.label for w in failed],
        diff=dict(before=before, after=after),
        msg=("%d of %d nodes failed: %s" % (len(failed), len(works), "; ".join(w.reason for w in failed))
             if failed else "%d nodes reconciled" % len(works)),
    )


# --------------------------------------------------------------------------- one identity

def _file_mode(value):
    """A file mode from an octal string ("0600") or a number (YAML reads an unquoted 0600 as 384)."""
    if value is None or value == "":
        return 0o600
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(c not in "01234567" for c in text):
            raise FleetError("field 'mode': %r is not an octal file mode such as '0600' (quote it in YAML)" % (value,))
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise FleetError("field 'mode': %r is not a file mode (0000-7777)" % (value,))
    return mode


def node_identity(params, client, check_mode):
    """The node_identity module: pick or make an identity, validate it, put it into a container.

    The identity comes from ``node_db_b64``, else the registry's record of ``label``, else the node.db the
    container already holds, else a fresh one (when ``generate``). With a registry, the chosen identity is
    kept there (encrypted) and the record's node_id follows it.
    """
    import base64
    import hmac
    from ansible_collections.fenrir.fleet.plugins.module_utils.containers import make_tar, read_file, identity_of
    label = params.get("label")
    container = params.get("container")
    who = label or container  # how errors name the node
    path = params.get("path") or "/opt/knarr/node.db"
    mode = _file_mode(params.get("mode"))
    try:
        seed, source = None, None
        if params.get("node_db_b64"):
            seed, source = ident.seed_from_b64(params["node_db_b64"], who), "node_db_b64"
        current = None
        if container:
            try:
                current = read_file(client.api, container, path)
            except Exception as exc:  # NotFound for the container itself, API errors
                raise FleetError("container %r: cannot read %s: %s" % (container, path, getattr(exc, "explanation", exc)))
        current_seed = identity_of(current[0]) if current else None

        def fresh():
            if not params.get("generate", True):
                raise FleetError("node %r, field 'node_db_b64': no identity given, none in the registry or the "
                                 "container, and generate is false" % (who,))
            return ident.new_seed()

        registry_changed = False
        if params.get("registry"):
            if not label:
                raise FleetError("field 'label': required with registry")
            with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
                if reg.get(label) is None:
                    raise FleetError("node %r, field 'label': is not in the registry %s" % (label, reg.path))
                with reg.transaction():
                    stored = reg.get_seed(label)
                    if seed is None and stored is None and current_seed is not None:
                        seed, source = current_seed, "container"
                    if seed is None and stored is None:
                        seed, source = fresh(), "generated"
                    seed, registry_changed = reg.ensure_identity(label, seed)
                    source = source or "registry"
                    node_id = ident.node_id_from_seed(seed)
                    if reg.get(label)["node_id"] != node_id:
                        registry_changed = reg.set_fields(label, node_id=node_id) or registry_changed
        if seed is None and current_seed is not None:
            seed, source = current_seed, "container"
        if seed is None:
            seed, source = fresh(), "generated"
        node_id = ident.node_id_from_seed(seed)
        changed = registry_changed
        container_changed = False
        if container:
            same = current is not None and current_seed is not None and current[1] == mode and \
                hmac.compare_digest(current_seed, seed)
            if not same:
                container_changed = changed = True
                if not check_mode:
                    client.api.put_archive(container, "/", make_tar({path: (ident.build_node_db(seed), mode)}))
        result = dict(
            changed=changed, node_id=node_id, source=source, container=container, path=path if container else None,
            diff=dict(before=dict(node_id=ident.node_id_from_seed(current_seed) if current_seed else None,
                                  present=current is not None),
                      after=dict(node_id=node_id, present=True)) if container_changed else dict(before={}, after={}),
        )
        if params.get("return_content"):
            result["node_db_b64"] = base64.b64encode(ident.build_node_db(seed)).decode("ascii")
        return result
    except (RegistryError, ident.IdentityError) as exc:
        raise FleetError(str(exc))
