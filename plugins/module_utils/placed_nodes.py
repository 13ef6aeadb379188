# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fenrir.fleet.knarr_container across many Docker engines (``engines`` given): the fleet's nodes on the controller's
engine and on managed Docker hosts, all engines at once, each isolated from the others.

Where a node lives comes from the registry (``fenrir.fleet.fleet_placement`` placed it; in check mode from the
``allocations`` it planned).  Per node:

* bridge on the local engine: exactly the single-engine container (address on ``fenrir-fleet``, nothing published);
* bridge on a managed host: an address of the host's ``fenrir-fleet`` /24, and its node port -- a port of the
  host's pool -- published on the host's address and advertised there (``advertise_host``): nodes on other hosts,
  and the controller's proof of life, reach it at ``host address:port``;
* host network: the host's network namespace, the node, sidecar and cockpit ports a block of the host's pool,
  advertised on the host's address.

Every engine is connected to at once and reconciled on its own thread (with ``parallelism`` nodes at a time
each).  An engine that is unreachable, failed an earlier step (``failed_engines``) or refuses its work fails only
its own nodes -- recorded ``failed`` with the reason, which names the host.  A node moved to another host takes
its node.db (identity and data) from its previous container, which is removed once the node proved itself on its
new host; a move cut short is finished by the next run (the previous host is read from the node's audit entries).
"""

from __future__ import annotations

import threading

from ansible_collections.fenrir.fleet.plugins.module_utils import checkpoints
from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils import rolling_upgrade
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (
    APIError, DockerException, NotFound, engine_failures)
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_hosts import (
    close_all, connect_engines, describe, engine_name, host_reason, per_engine)
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import container_name, validate_label
from ansible_collections.fenrir.fleet.plugins.module_utils.node_containers import (
    LABEL_PREFIX, NodeWork, Reconciler, foreign_registry, probe_works, remove_containers)
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import LOCAL_ENGINE, normalize_node
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry, registry_exists
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import registry_location

HOST_NETWORK = "host"


class Placed:
    """Where one node lives: its engine, network mode, the address it holds, its port, the host's address."""

    def __init__(self, engine, network_mode, ip, port, host_address, node_port):
        self.engine = engine
        self.network_mode = network_mode or "bridge"
        self.remote = engine != LOCAL_ENGINE
        self.port = port
        self.publish = None
        if self.network_mode == HOST_NETWORK:
            self.container_ip = None
            self.advertise_host = host_address
            self.probe_at = (host_address, port)
        elif self.remote:
            self.container_ip = ip
            self.advertise_host = host_address
            self.publish = (host_address, port)
            self.probe_at = (host_address, port)
        else:
            self.container_ip = ip
            self.advertise_host = ip
            self.probe_at = (ip, node_port)

    def adjust(self, spec):
        """The node's settings as it runs here: on a managed host its node port is its allocated port; in host
        network mode the sidecar and cockpit ports follow it (they share the host's network namespace)."""
        if not self.remote or not self.port:
            return spec
        spec = dict(spec, port=self.port)
        if self.network_mode == HOST_NETWORK:
            spec["sidecar_port"] = self.port + 1
            if spec["cockpit_port"]:
                spec["cockpit_port"] = self.port + 2
            # The node port listens on the host's address only, not on every interface of the host (an explicit
            # [node] host in config_overrides still wins).
            overrides = dict(spec.get("config_overrides") or {})
            overrides["node"] = dict({"host": self.advertise_host}, **(overrides.get("node") or {}))
            spec["config_overrides"] = overrides
        return spec

    def create_options(self):
        if not self.publish:
            return {}
        address, port = self.publish
        return {"host_config": {"port_bindings": {"%d/tcp" % port: (address, port)}},
                "container": {"ports": [(port, "tcp")]}}


class _Router:
    """The Reconciler of each engine, behind the one interface knarr_container's recording and diff use."""

    def __init__(self):
        self.recs = {}

    def discard(self, work):
        rec = self.recs.get(work.engine)
        if rec is not None:
            rec.discard(work)

    def diff_views(self, work):
        rec = self.recs.get(work.engine)
        return rec.diff_views(work) if rec is not None else (None, None)


def _engine_failed(work, reason, record=None):
    work.failed = True
    work.reason = host_reason(work.engine, reason)
    # The container (if any) was not touched: the record keeps its container id.
    work.container_id = (record or {}).get("container_id")


def _placements(reg, params, check_mode, engines):
    """(node, placement view) per node: the registry record, or in check mode the placement planned."""
    planned = {a.get("label"): a for a in params["allocations"]}
    out, seen = [], set()
    for raw in params["nodes"]:
        node = normalize_node(raw, validated=True)
        label = node["label"]
        if label in seen:
            raise FleetError("given twice", label=label, field="label")
        seen.add(label)
        record = reg.get(label)
        plan = planned.get(label) or {}
        if check_mode and plan.get("engine"):
            view = dict(plan, previous=engine_name(record["docker_host"]) if record else None)
        elif record is None or record["status"] == "destroyed" or not (record["ip"] or record["port"]):
            raise FleetError("is not placed in the registry %s; place it with fenrir.fleet.fleet_placement first"
                             % registry_location(reg.path), label=label, field="label")
        else:
            view = dict(record, engine=engine_name(record["docker_host"]))
        engine = view["engine"]
        if engine not in engines:
            raise FleetError("lives on Docker host %r, which is not in engines" % engine, label=label,
                             field="docker_host")
        if node.get("ip") and view.get("network_mode") != HOST_NETWORK and node["ip"] != view.get("ip"):
            raise FleetError("%s differs from the address %s the registry holds for it" % (node["ip"], view.get("ip")),
                             label=label, field="ip")
        out.append((node, view, record))
    return out


def _works(reg, params, check_mode, engines, placements, provisioner, warnings, recovered=None):
    from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_container import (
        cockpit_tokens, provisioner_default)
    works, only_planned = [], set()
    former = reg.former_locations()
    for node, view, dummy in placements:
        provisioner_default(node, provisioner, warnings)
        if reg.get_seed(node["label"]) is None:
            only_planned.add(node["label"])
    tokens = cockpit_tokens(reg, params, [n for n, dummy, dummy2 in placements], only_planned if check_mode else ())
    for node, view, record in placements:
        engine = engines[view["engine"]]
        placed = Placed(view["engine"], view.get("network_mode"), view.get("ip"), view.get("port"),
                        engine.get("address"), node["port"])
        spec = placed.adjust(node)
        network = HOST_NETWORK if placed.network_mode == HOST_NETWORK else params["network"]
        seed = reg.get_seed(node["label"]) or (recovered or {}).get(node["label"])
        node_id = None
        if seed is None:
            if not check_mode:
                raise FleetError("the registry holds no identity for it", label=node["label"], field="identity")
            seed, node_id = ident.new_seed(), view.get("node_id")  # check mode: a placeholder seed, nothing written
        work = NodeWork(spec, view.get("ip"), seed, reg.path, network, node_id=node_id, placement=placed,
                        cockpit_token=tokens.get(node["label"]), former=former)
        work.record = record
        work.view = view
        works.append(work)
    return works


def _previous_engines(reg, works, check_mode):
    """{label: previous engine name} of nodes whose move to their engine is not finished."""
    previous = {}
    for w in works:
        if check_mode:
            prev = w.view.get("previous")
            if prev and prev != w.engine:
                previous[w.label] = prev
            continue
        if w.record is not None and w.record.get("container_id"):
            continue
        prev = reg.previous_placement(w.label)
        if prev is not None and engine_name(prev["docker_host"]) != w.engine:
            previous[w.label] = engine_name(prev["docker_host"])
    return previous


def _take_node_db(w, prev, clients, failed, check_mode):
    """A moved node: its node.db from its previous container (stopped first), when its new engine has no container
    for it yet.  Fails the node when the previous host cannot be reached (its data is there)."""
    if prev in failed or prev not in clients:
        w.failed = True
        w.reason = ("moving from Docker host %r: its node.db (identity and data) is there and the host cannot be reached "
                    "(%s); not moved. Run again when it is back, or decommission the node"
                    % (prev, failed.get(prev, "not among the engines of this run")))
        return
    old_api = clients[prev].api
    try:
        info = old_api.inspect_container(w.name)
    except NotFound:
        w.actions.append("previous container on %s is gone" % prev)
        w.moved_from = None
        return
    except (APIError, DockerException) as exc:
        w.failed, w.reason = True, "moving from Docker host %r: %s" % (prev, describe(exc))
        return
    labels = (info.get("Config") or {}).get("Labels") or {}
    if labels.get(LABEL_PREFIX + "label") not in (None, w.label) or foreign_registry(labels, w.registry_path):
        w.failed, w.reason = True, ("moving from Docker host %r: container %s there is not this node's; refusing to "
                                    "touch it" % (prev, w.name))
        return
    w.moved_from = prev
    if check_mode:
        w.actions.append("take node.db from %s" % prev)
        return
    try:
        new_api = clients[w.engine].api
        new_api.inspect_container(w.name)
        return  # the new container exists already (an earlier run made it): nothing to carry
    except NotFound:
        pass
    except (APIError, DockerException) as exc:
        w.failed, w.reason = True, host_reason(w.engine, describe(exc))
        return
    kept = Reconciler(clients[prev], check_mode=False)._kept_node_db(w, (info.get("State") or {}).get("Running"))
    if kept is not None:
        w.carried_db = kept
        w.actions.append("take node.db from %s" % prev)
    else:
        w.actions.append("previous node.db on %s unusable; identity only" % prev)


def _remove_previous(w, clients, check_mode, warnings):
    prev = getattr(w, "moved_from", None)
    if not prev or w.failed:
        return
    if check_mode:
        w.actions.append("remove from %s" % prev)
        return
    try:
        clients[prev].api.remove_container(w.name, force=True)
        w.actions.append("remove from %s" % prev)
    except NotFound:
        pass
    except (APIError, DockerException) as exc:
        warnings.append("node %s: its previous container %s on Docker host %r was not removed: %s"
                        % (w.label, w.name, prev, describe(exc)))


def start_nodes(params, check_mode, diff):
    """state=started / probed over ``engines``."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_container import _outcome, _provisioner, \
        _record, _recover_identities, _register_proven
    engines = {e["name"]: e for e in params["engines"]}
    warnings = []
    with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
        provisioner, provisioner_changed = _provisioner(reg, params)
        placements = _placements(reg, params, check_mode, engines)
        wanted = {view["engine"] for dummy, view, dummy2 in placements}
        wanted |= {view["previous"] for dummy, view, dummy2 in placements if view.get("previous")}
        checkpoints.reached("before_engines")
        clients, failed = connect_engines(params, [engines[n] for n in sorted(wanted) if n in engines],
                                          max_pool_size=max(8, params["parallelism"]),
                                          skip=params.get("failed_engines"))
        checkpoints.reached("engines_connected")
        try:
            recovered = {}
            if LOCAL_ENGINE in clients:
                local = [n for n, v, dummy in placements if v["engine"] == LOCAL_ENGINE]
                recovered = _recover_identities(reg, clients[LOCAL_ENGINE], local, check_mode)
            works = _works(reg, params, check_mode, engines, placements, provisioner, warnings, recovered)
            for w in works:
                if w.engine in failed:
                    _engine_failed(w, failed[w.engine], w.record)
            if params["state"] == "probed":
                probe_works([w for w in works if not w.failed], params["parallelism"], params["boot_timeout"],
                            identity=provisioner)
                if params["register"]:
                    _register_proven(reg, works)
                return _with_hosts(_outcome(works, check_mode, None, diff, "answer", provisioner, provisioner_changed,
                                            []), works, failed, warnings)
            previous = _previous_engines(reg, works, check_mode)
            for w in works:
                if not w.failed and w.label in previous:
                    _take_node_db(w, previous[w.label], clients, failed, check_mode)
            router = _Router()
            lock = threading.Lock()

            def one_engine(name):
                mine = [w for w in works if w.engine == name and not w.failed]
                if not mine:
                    return
                rec = Reconciler(clients[name], check_mode=check_mode, parallelism=params["parallelism"],
                                 boot_timeout=params["boot_timeout"], wait=params["wait"], identity=provisioner,
                                 upgrade_batch=params.get("upgrade_batch"),
                                 upgrade_rollback=params.get("upgrade_rollback"))
                with lock:
                    router.recs[name] = rec
                try:
                    problems = rec.preflight(mine)
                except (APIError, DockerException, OSError) as exc:
                    for w in mine:
                        _engine_failed(w, describe(exc), w.record)
                    return
                refused = {}
                for label, field, message in problems:
                    if check_mode and field in ("network", "image"):
                        continue  # made by the earlier steps of a real run
                    refused.setdefault(label, str(FleetError(message, label=label, field=field)))
                for w in mine:
                    if w.label in refused:
                        _engine_failed(w, refused[w.label], w.record)
                later = rec.run([w for w in mine if not w.failed], defer_upgrades=True)
                with lock:
                    deferred.extend(later)

            deferred = []
            rolling_upgrade.batch_size(params.get("upgrade_batch"), 1)  # refused before anything changes
            per_engine(sorted(clients), one_engine)
            # Containers to make anew: in batches across every engine, each batch proven before the next.
            upgrade = rolling_upgrade.run_batches(deferred, lambda w: router.recs[w.engine],
                                                  params.get("upgrade_batch"), params.get("upgrade_rollback") or "batch",
                                                  check_mode, params["parallelism"])
            for w in works:
                _remove_previous(w, clients, check_mode, warnings)
            checkpoints.reached("before_record")
            _record(reg, router, works, check_mode, params["register"])
        finally:
            close_all(clients)
    return _with_hosts(_outcome(works, check_mode, router, diff, "reconciled", provisioner, provisioner_changed, [],
                                upgrade=upgrade), works, failed, warnings)


def _with_hosts(result, works, failed, warnings):
    hosts = {}
    for w in works:
        slot = hosts.setdefault(w.engine, dict(nodes=0, failed=0, reason=None))
        slot["nodes"] += 1
        slot["failed"] += int(w.failed)
    for name, reason in failed.items():
        if name in hosts:
            hosts[name]["reason"] = host_reason(name, reason)
    result["hosts"] = hosts
    result["failed_hosts"] = {name: h["reason"] for name, h in hosts.items() if h["reason"]}
    if result["failed_hosts"]:
        result["msg"] = "Docker host(s) %s failed (%s); %s" % (
            ", ".join(sorted(result["failed_hosts"])), "; ".join(result["failed_hosts"][n]
                                                                 for n in sorted(result["failed_hosts"])),
            result["msg"])
    if warnings:
        result["warnings"] = list(result.get("warnings") or []) + warnings
    return result


# --------------------------------------------------------------------------- decommission

def remove_nodes(params, check_mode, diff):
    """state=absent over ``engines``: every node's container removed on its engine (and a previous container of an
    unfinished move on its previous one), then the records of the nodes whose containers are gone destroyed."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_container import _removal_result
    labels = list(params["labels"]) if params.get("labels") is not None else [n["label"] for n in params["nodes"]]
    engines = {e["name"]: e for e in params["engines"]}
    engines.setdefault(LOCAL_ENGINE, dict(name=LOCAL_ENGINE))  # nodes the registry does not know: by name, locally
    names, where = {}, {}
    for label in labels:
        name = container_name(validate_label(label, removal=True))
        if name in names:
            raise FleetError("given twice", label=label, field="labels")
        names[name] = label
        where[label] = {LOCAL_ENGINE}
    exists = registry_exists(params["registry"])
    if exists:
        with Registry(params["registry"], key_file=params.get("key_file"), check_mode=True) as reg:
            for label in labels:
                record = reg.get(label)
                if record is not None and record["status"] != "destroyed":
                    where[label] = {engine_name(record["docker_host"])}
                    prev = reg.previous_placement(label)
                    if prev is not None:
                        where[label].add(engine_name(prev["docker_host"]))
    needed = sorted({e for s in where.values() for e in s})
    unknown = [e for e in needed if e not in engines]
    if unknown:
        raise FleetError("Docker host(s) %s are not in engines" % ", ".join(unknown), field="engines")
    clients, failed = connect_engines(params, [engines[n] for n in needed], skip=params.get("failed_engines"))
    outcome = {}
    try:
        def one(engine):
            mine = sorted(n for n, label in names.items() if engine in where[label])
            if engine in failed or not mine:
                return
            got = remove_containers(clients[engine], mine, check_mode, params["parallelism"],
                                    registry_path=registry_location(params["registry"]))
            with lock:
                for name, result in got.items():
                    outcome.setdefault(name, []).append(result if not result.startswith("error") else
                                                        "error: %s" % host_reason(engine, result[len("error: "):]))
        lock = threading.Lock()
        per_engine(needed, one)
    finally:
        close_all(clients)
    merged = {}
    for name, label in names.items():
        results = outcome.get(name, [])
        errors = [r for r in results if r.startswith("error")]
        errors += ["error: %s" % host_reason(e, failed[e]) for e in sorted(where[label]) if e in failed]
        merged[name] = errors[0] if errors else ("removed" if "removed" in results else "absent")
    if not check_mode:
        checkpoints.reached("after_remove")
    records = {}
    if exists:
        with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
            with reg.transaction():
                for name, label in sorted(names.items()):
                    if not merged[name].startswith("error"):
                        records[label] = reg.destroy(label)
    result = _removal_result(names, merged, records, check_mode, diff)
    result["failed_hosts"] = {e: host_reason(e, failed[e]) for e in failed}
    return result


def run(params, check_mode=False, diff=False):
    with engine_failures():
        if params["state"] == "absent":
            result = remove_nodes(params, check_mode, diff)
        else:
            result = start_nodes(params, check_mode, diff)
    if not diff:
        result.pop("diff", None)
    if result["failed_nodes"]:
        raise ModuleFailure(result.pop("msg"), result)
    return result
