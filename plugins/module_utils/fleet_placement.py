# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.fleet_placement module: which Docker host each node lives on, and what it holds there.

* A node names its host (``docker_host``: a host of the registry, or ``local`` for the controller's engine),
  or keeps the host its registry record has (placement is sticky: a re-run never moves a node by itself), or --
  new, unnamed -- is placed on the ``connected`` host with the most free capacity: declared memory against the
  host's memory (``hosts.memory_bytes``), and the host's node limit (``hosts.max_nodes``).
* While the registry holds no Docker host, nothing is placed and nothing written (``hosts_mode: false``): the
  knarr_node role then runs its single-engine flow exactly as before.
* A bridge node gets an address of its host's ``fenrir-fleet`` /24 (the local engine keeps the classic pool), and on
  a managed host a port of the host's port pool on which its node port is published; a host-network node gets a
  port block (node, sidecar, cockpit) of the host's pool instead of an address.  All in one registry transaction,
  with every node's identity (as fenrir.fleet.fleet_registry does).
* A node whose host changes is moved (``moves``): new address and port, same label, identity and node id; its
  container and node.db follow in fenrir.fleet.knarr_container.
* ``engines``: what the Docker-facing modules need to reach every engine involved.
"""

from __future__ import annotations

import os

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_hosts import engine_name
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import validate_label
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import (
    LOCAL_ENGINE, NETWORK_MODES, NODE_OPTIONS, parse_memory)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    Pool, Registry, read_hosts, read_nodes, registry_exists)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import (
    pool_addresses, pool_argument_spec, registry_argument_spec, registry_location)

NAME = "fleet_placement"
REQUIREMENTS = ("cryptography",)
# Ports a node takes from its host's port pool: the node port, the sidecar (port + 1, knarr's default) and the
# cockpit (port + 2): in host-network mode they share the host's network namespace.
PORT_STEP = 3
DEFAULT_MEMORY = NODE_OPTIONS["memory"]["default"]

NODE_REQUEST = dict(
    label=dict(type="str", required=True),
    docker_host=dict(type="str"),
    network_mode=dict(type="str", default="bridge", choices=list(NETWORK_MODES)),
    memory=dict(type="raw", default=DEFAULT_MEMORY),
    port=dict(type="int", default=NODE_OPTIONS["port"]["default"]),
    image=dict(type="str", default=NODE_OPTIONS["image"]["default"]),
    ip=dict(type="str"),
    location=dict(type="str"),
    nonce=dict(type="str"),
    node_db_b64=dict(type="str", no_log=True),
)


def argument_spec():
    spec = registry_argument_spec(
        state=dict(type="str", choices=["present", "query"], default="present"),
        nodes=dict(type="list", elements="dict", default=[], options=NODE_REQUEST),
        labels=dict(type="list", elements="str"),
        absent=dict(type="list", elements="str", default=[]),
        inventory=dict(type="list", elements="str"),
        prune=dict(type="bool", default=False),
        tls_dir=dict(type="path"),
        port_start=dict(type="int", default=20000),
        port_end=dict(type="int", default=29999),
        engine_timeout=dict(type="int", default=60),
        identity=dict(type="bool", default=True),
    )
    spec.update(pool_argument_spec())
    return dict(argument_spec=spec, mutually_exclusive=[("nodes", "labels")])


ARGUMENT_SPEC = argument_spec()


# --------------------------------------------------------------------------- choosing hosts (no I/O)

def choose_hosts(requests, hosts, records):
    """Every requested node's Docker host: ``{label: host name or None}`` (None = the local engine).

    ``requests``: [{label, docker_host, memory_bytes}]; ``hosts``: {name: host record} (not decommissioned);
    ``records``: {label: live registry record (docker_host)} of the whole registry.  A named host must be one of
    ``hosts``; an unnamed node keeps its record's host; the rest go, in label order, to the ``connected`` host
    with the most free memory (ties: fewer nodes, then name) that is under its node limit and has room for the
    node's memory.  Nodes of the registry that are not requested count with the default memory.  Raises FleetError
    naming the nodes that cannot be placed.
    """
    requested = {r["label"]: r for r in requests}
    target, auto = {}, []
    for req in sorted(requests, key=lambda r: r["label"]):
        label, wish = req["label"], req.get("docker_host")
        if wish == LOCAL_ENGINE:
            target[label] = None
        elif wish:
            if wish not in hosts:
                raise FleetError("%r is not a Docker host of the fleet registry (known: %s); prepare it with the "
                                 "docker_host role (playbooks/docker_hosts.yml) first, or name %r for the controller's "
                                 "engine" % (wish, ", ".join(sorted(hosts)) or "none", LOCAL_ENGINE),
                                 label=label, field="docker_host")
            target[label] = wish
        elif label in records:
            target[label] = records[label]["docker_host"]
        elif not hosts:
            target[label] = None
        else:
            auto.append(req)
    default_memory = parse_memory(DEFAULT_MEMORY)
    used = {name: [0, 0] for name in hosts}  # name -> [nodes, memory bytes]
    for label, rec in records.items():
        if label not in requested and rec["docker_host"] in used:
            used[rec["docker_host"]][0] += 1
            used[rec["docker_host"]][1] += default_memory
    for label, host in target.items():
        if host in used:
            used[host][0] += 1
            used[host][1] += requested[label]["memory_bytes"]
    connected = sorted(name for name, h in hosts.items() if h.get("status") == "connected")
    unplaced = []
    for req in auto:
        best = None
        for name in connected:
            host, (count, memory) = hosts[name], used[name]
            if host.get("max_nodes") is not None and count >= host["max_nodes"]:
                continue
            total = host.get("memory_bytes")
            free = (total - memory - req["memory_bytes"]) if total else float("inf")
            if free < 0:
                continue
            key = (-free, count, name)
            if best is None or key < best[0]:
                best = (key, name)
        if best is None:
            unplaced.append(req["label"])
            continue
        target[req["label"]] = best[1]
        used[best[1]][0] += 1
        used[best[1]][1] += req["memory_bytes"]
    if unplaced:
        raise FleetError("no connected Docker host has room for %s (connected: %s; free memory and node limits "
                         "counted); add a host, raise docker_host_max_nodes, or name a host with knarr_node_docker_host"
                         % ("it" if len(unplaced) == 1 else "them", ", ".join(connected) or "none"),
                         label=unplaced, field="docker_host")
    return target


# --------------------------------------------------------------------------- engines

def tls_files(tls_dir):
    if not tls_dir:
        return {}
    return dict(ca_path=os.path.join(tls_dir, "ca.pem"), client_cert=os.path.join(tls_dir, "cert.pem"),
                client_key=os.path.join(tls_dir, "key.pem"))


def local_engine(params):
    subnet, gateway, dummy, dummy2 = pool_addresses(params)
    return dict(name=LOCAL_ENGINE, subnet=subnet, gateway=gateway, status="connected", images=[], nodes=[])


def host_engine(host, params):
    """The engine entry of a Docker host record."""
    name = host["name"]
    entry = dict(name=name, docker_host=host.get("endpoint"), address=host.get("address"), subnet=host.get("subnet"),
                 gateway=_gateway(host.get("subnet")), status=host.get("status"), timeout=params["engine_timeout"],
                 images=[], nodes=[])
    entry.update(tls_files(params.get("tls_dir")))
    if host.get("status") == "decommissioned":
        entry["problem"] = "is decommissioned"
    elif not host.get("endpoint"):
        entry["problem"] = ("has no Docker endpoint in the registry (status %s: never proven); run the docker_host "
                            "role (playbooks/docker_hosts.yml) for it" % host.get("status"))
    elif not params.get("tls_dir"):
        entry["problem"] = "no client certificate to reach it: set knarr_node_docker_tls_dir (tls_dir)"
    return entry


def _gateway(subnet):
    if not subnet:
        return None
    import ipaddress
    return str(next(ipaddress.IPv4Network(subnet).hosts()))


def host_pool(host, label):
    if not host.get("subnet"):
        raise FleetError("Docker host %r holds no subnet in the registry (decommissioned?)" % host["name"],
                         label=label, field="docker_host")
    return Pool.for_subnet(host["subnet"])


def advertise(record, request_port, host):
    """``host:port`` where the node answers: its host's address and its port on a managed host or in host
    network mode, else its own address and node port."""
    if record.get("port") and host is not None:
        return "%s:%d" % (host.get("address"), record["port"])
    return "%s:%d" % (record.get("ip"), request_port) if record.get("ip") else None


# --------------------------------------------------------------------------- the module

def _requests(params):
    requests, seen = [], set()
    for raw in params["nodes"]:
        req = dict(raw)
        label = validate_label(req["label"])
        if label in seen:
            raise FleetError("given twice", label=label, field="label")
        seen.add(label)
        req["memory_bytes"] = parse_memory(req.get("memory") or DEFAULT_MEMORY, label)
        if req.get("node_db_b64"):
            req["seed"] = ident.seed_from_b64(req["node_db_b64"], label)
        if req["network_mode"] == "host" and req.get("ip"):
            raise FleetError("a host-network node has no address of its own; unset ip", label=label, field="ip")
        requests.append(req)
    return requests


def _hosts_known(params):
    if not registry_exists(params["registry"]):
        return {}
    return {h["name"]: h for h in read_hosts(params["registry"])}


def _not_in_inventory(params, records):
    if params.get("inventory") is None:
        return []
    inventory = set(params["inventory"])
    return sorted(label for label in records if label not in inventory)


def _engines(params, hosts, usage):
    """Engine entries for every engine in ``usage`` ({engine name: {nodes, images}})."""
    out = []
    for name in sorted(usage, key=lambda n: (n != LOCAL_ENGINE, n)):
        entry = local_engine(params) if name == LOCAL_ENGINE else host_engine(
            hosts.get(name) or dict(name=name, status="decommissioned"), params)
        entry["nodes"] = sorted(usage[name]["nodes"])
        entry["images"] = sorted(usage[name]["images"])
        out.append(entry)
    return out


def _use(usage, engine, label, image=None):
    slot = usage.setdefault(engine, dict(nodes=set(), images=set()))
    if label:
        slot["nodes"].add(label)
    if image:
        slot["images"].add(image)


def query(params):
    """state=query: where the given nodes (or all) live, and the engines to reach them; reads only."""
    none = dict(changed=False, hosts_mode=False, hosts=[], nodes=[], engines=[], not_in_inventory=[])
    if not registry_exists(params["registry"]):
        return none
    hosts = {h["name"]: h for h in read_hosts(params["registry"], include_decommissioned=True)}
    if not any(h["status"] != "decommissioned" for h in hosts.values()) and params.get("inventory") is None:
        return dict(none, hosts=sorted(hosts.values(), key=lambda h: h["name"]))  # no live host: no node is on one
    nodes = read_nodes(params["registry"])
    live = {n["label"]: n for n in nodes}
    wanted = params.get("labels")
    usage = {}
    selected = [n for n in nodes if wanted is None or n["label"] in wanted]
    for n in selected:
        _use(usage, engine_name(n["docker_host"]), n["label"], n.get("image"))
    for n in selected:
        host = hosts.get(n["docker_host"]) if n["docker_host"] else None
        n["engine"] = engine_name(n["docker_host"])
        n["advertise"] = advertise(n, NODE_OPTIONS["port"]["default"], host)
    if wanted is None:
        for name, host in hosts.items():
            if host["status"] != "decommissioned":
                _use(usage, name, None)
    live_hosts = [h for h in hosts.values() if h["status"] != "decommissioned"]
    return dict(changed=False, hosts_mode=bool(live_hosts) or any(n["docker_host"] for n in nodes),
                hosts=sorted(hosts.values(), key=lambda h: h["name"]), nodes=selected,
                engines=_engines(params, hosts, usage), not_in_inventory=_not_in_inventory(params, live))


def place(params, check_mode):
    """state=present: place every node, hold its address/port and identity (one transaction)."""
    requests = _requests(params)
    known = _hosts_known(params)
    wants_hosts = any(r.get("docker_host") not in (None, LOCAL_ENGINE) or r["network_mode"] == "host"
                      for r in requests)
    if not known and not wants_hosts:
        # No Docker host in the registry: the single-engine flow (fleet_registry, ...) does everything as before.
        result = dict(changed=False, hosts_mode=False, nodes=[], engines=[], moves={}, hosts=[], prune=[],
                      not_in_inventory=[])
        if params.get("inventory") is not None and registry_exists(params["registry"]):
            try:
                live = {n["label"]: n for n in read_nodes(params["registry"])}
            except FleetError:  # a registry of an older schema: migrated by this run's fleet_registry
                live = {}
            result["not_in_inventory"] = _not_in_inventory(params, live)
            result["prune"] = result["not_in_inventory"] if params["prune"] else []
        return result
    local_pool = Pool(*pool_addresses(params))
    ports = (params["port_start"], params["port_end"], PORT_STEP)
    if not 0 < ports[0] <= ports[1] < 65534:
        raise FleetError("the port pool %d-%d is not within 1-65533" % ports[:2], field="port_start")
    results, before_all, after_all, moves, usage = [], {}, {}, {}, {}
    changed = False
    with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
        with reg.transaction():
            hosts = {h["name"]: h for h in reg.hosts(include_decommissioned=False)}
            records = {r["label"]: r for r in reg.all(include_destroyed=False)}
            target = choose_hosts(requests, hosts, records)
            for req in requests:
                label = req["label"]
                host_name = target[label]
                host = hosts.get(host_name) if host_name else None
                if req["network_mode"] == "host" and host is None:
                    raise FleetError("host network mode needs a managed Docker host (knarr_node_docker_host): the "
                                     "controller's own engine has no address the fleet can reach it on",
                                     label=label, field="network_mode")
                pool = host_pool(host, label) if host is not None else local_pool
                need_ports = ports if host is not None else None
                was = records.get(label)
                before, after, ch = reg.place(req, pool, docker_host=host_name, network_mode=req["network_mode"],
                                              ports=need_ports, host_address=host.get("address") if host else None)
                ch = _identity(reg, req, params["identity"]) or ch
                after = reg.get(label)
                if was is not None and was["docker_host"] != host_name:
                    moves[label] = {"from": engine_name(was["docker_host"]), "to": engine_name(host_name)}
                    _use(usage, engine_name(was["docker_host"]), None)
                changed = changed or ch
                entry = dict(after, engine=engine_name(host_name), advertise=advertise(after, req["port"], host))
                results.append(entry)
                _use(usage, engine_name(host_name), label, req.get("image"))
                if ch:
                    before_all[label], after_all[label] = _diff_view(before), _diff_view(after)
            for label in params["absent"]:
                rec = records.get(label)
                if rec is not None:
                    _use(usage, engine_name(rec["docker_host"]), None)
            not_in_inventory = _not_in_inventory(params, records)
            prune = not_in_inventory if params["prune"] else []
            for label in prune:
                _use(usage, engine_name(records[label]["docker_host"]), None)
            all_hosts = {h["name"]: h for h in reg.hosts()}
    out = dict(changed=changed, hosts_mode=True, nodes=results, moves=moves,
               engines=_engines(params, all_hosts, usage), hosts=sorted(hosts.values(), key=lambda h: h["name"]),
               not_in_inventory=not_in_inventory, prune=prune, registry=registry_location(params["registry"]))
    out["diff"] = dict(before=before_all, after=after_all)
    return out


def _identity(reg, req, want_identity):
    """The node's identity, as fenrir.fleet.fleet_registry keeps it (an adopted node's stays in its container)."""
    label = req["label"]
    record = reg.get(label)
    adopted = req.get("seed") is None and record["node_id"] is not None and reg.get_seed(label) is None
    if not (want_identity and not adopted) and req.get("seed") is None:
        return False
    seed, changed = reg.ensure_identity(label, req.get("seed"), ident.new_seed)
    node_id = ident.node_id_from_seed(seed)
    if record["node_id"] != node_id:
        changed = reg.set_fields(label, node_id=node_id) or changed
    return changed


def _diff_view(record):
    if record is None:
        return None
    return {k: record.get(k) for k in ("label", "docker_host", "network_mode", "ip", "port", "status", "node_id")}


def run(params, check_mode=False, diff=False):
    try:
        result = query(params) if params["state"] == "query" else place(params, check_mode)
    except FleetError as exc:
        raise ModuleFailure(str(exc))
    if not diff:
        result.pop("diff", None)
    return result
