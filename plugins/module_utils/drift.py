# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Looking at the fleet: the registry read-only, its audit chain, and its drift from Docker.

* :func:`read_nodes` reads ``fleet.db`` through a ``mode=ro`` connection: never migrated, never written.
  The inventory plugin ``fenrir.fleet.fleet`` and :func:`fleet_status` use it.
* :func:`audit` verifies the audit chain with :meth:`Registry.verify` (registry opened in check mode).
* :func:`compare` sets the registry's active nodes beside the containers on the engine and says, per node,
  how they differ; :func:`fleet_status` lists the containers and inspects the fleet network once each
  (two Docker API calls however large the fleet) and calls it.
* :func:`release_stale` is the one write: with ``release_stale``, :func:`fleet_status` marks records left in
  ``provisioning`` by a run that never finished failed and frees their addresses (one registry transaction).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import ProbeError, probe_once
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import NETWORK_OPTION, NODE_OPTIONS
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    ACTIVE_STATUSES, Registry, RegistryError, check_readable, former_locations, registry_id)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import read_nodes as registry_read_nodes

# The labels fenrir.fleet.knarr_container puts on every node container (see module_utils/node_containers.py).
LABEL_PREFIX = "fenrir.fleet."
ROLE_LABEL = LABEL_PREFIX + "role"
ROLE_VALUE = "knarr-node"
NODE_LABEL = LABEL_PREFIX + "label"
REGISTRY_LABEL = LABEL_PREFIX + "registry"

# Containers of the original fleet-provision-docker-lite skill carry no labels: they are known by name.
NAME_PREFIX = "fenrir-"

DEFAULT_NETWORK = NETWORK_OPTION["default"]
DEFAULT_NODE_PORT = NODE_OPTIONS["port"]["default"]
DEFAULT_PROBE_TIMEOUT = 2.0
DEFAULT_STALE_AFTER = 600.0  # seconds a 'provisioning' record may stay unchanged without a running container

# Every drift a node can show, and its key in the summary.
DRIFTS = (
    "status provisioning",   # the registry says the node is still being provisioned
    "stale provisioning",    # still provisioning, unchanged for longer than stale_after, no running container
    "status failed",         # the registry says provisioning failed (see its reason)
    "container missing",     # no container is the node's (labelled for this registry, or unlabelled and named like it)
    "stopped",               # the container exists but is not running
    "address differs",       # the container's address on the fleet network is not the registry's
    "container id differs",  # the container is not the one the registry recorded (recreated behind its back)
    "not answering",         # probe: the node did not answer status and echo
    "wrong identity",        # probe: the node answered with another node id than the registry's
    "not in registry",       # a container of this registry (or an unlabelled fenrir-* one on the fleet network)
                             # that is no active node's
    "duplicate container",   # a second container for the same node
    "not in inventory",      # a live node of the registry that the inventory no longer has (fenrir_prune removes it)
    "host unreachable",      # its Docker host could not be asked (the reason is in the host's entry)
)


class DriftError(FleetError):
    """The registry or the engine could not be read; the message says which and why."""


# --------------------------------------------------------------------------- the registry, read-only

def open_readonly(db):
    """Refuse a registry that does not exist or has another schema version (a file or a postgresql:// DSN)."""
    try:
        check_readable(db)
    except RegistryError as exc:
        raise DriftError(exc.bare_message)


def read_nodes(db, include_destroyed=False):
    """Every node record (public fields only, no secrets), ordered by address, read in one snapshot.

    Each record also has ``address_held``: whether the node holds its address (``ip``) right now.
    A destroyed node, or a failed one whose address was released, keeps ``ip`` as its last address.
    """
    try:
        return registry_read_nodes(db, include_destroyed=include_destroyed)
    except RegistryError as exc:
        raise DriftError(exc.bare_message)


# --------------------------------------------------------------------------- the audit chain

def audit(db, key_file=None, expect_head=None):
    """Verify the audit chain of ``db``; returns dict(ok, entries, problem, height, label, audit_head, registry).

    The registry is opened in check mode (nothing is written) after a read-only look that refuses a
    missing file or one with another schema version.  Chain and rows are read in one snapshot, so a
    concurrent writer cannot make an intact registry look edited.  ``audit_head`` is the newest entry (height,
    hash), to keep elsewhere; given an earlier one as ``expect_head``, the chain must still hold that entry.
    """
    path = registry_id(db)
    open_readonly(db)
    try:
        with Registry(db, key_file=key_file, check_mode=True) as reg:
            result = reg.verify()  # one read transaction: chain and rows from the same snapshot
            result = _with_head(reg, result, expect_head)
    except RegistryError as exc:
        raise DriftError(str(exc))
    return dict(result, registry=path)


def _with_head(reg, result, expect_head):
    """``result`` of verify with its head as ``audit_head``, checked against ``expect_head`` when given."""
    result = dict(result)
    head = result.pop("head")
    result["audit_head"] = head
    if not expect_head or not result["ok"]:
        return result
    height, digest = int(expect_head["height"]), expect_head["hash"]
    if height > head["height"]:
        problem = ("the audit trail ends at entry %d, but it reached entry %d when its head was kept: the registry "
                   "was rolled back (restored from an older copy) or its newest entries removed, anchor included"
                   % (head["height"], height))
    elif height > 0 and reg.entry_hash_at(height) != digest:
        problem = ("audit entry %d is not the one recorded when the head was kept (hash %s...): the registry was "
                   "replaced or its trail rewritten" % (height, str(digest)[:12]))
    else:
        return result
    return dict(result, ok=False, problem=problem, height=height, label=None)


def audit_accept(db, key_file=None, labels=(), rebuild_index=False, check_mode=False, expect_head=None):
    """Take records changed outside the registry as they are now (an ``accept`` audit entry each, by
    this actor), and/or rebuild the index of held addresses from the records; then verify.

    Only for changes an operator has looked at and means to keep: afterwards the registry writes to
    those records again.  Returns dict(changed, accepted, index_rebuilt, ok, entries, problem, ...)."""
    path = registry_id(db)
    open_readonly(db)
    accepted, rebuilt = [], False
    try:
        with Registry(db, key_file=key_file, check_mode=check_mode) as reg:
            with reg.transaction():
                for label in labels or ():
                    if reg.accept_external_change(label):
                        accepted.append(label)
                if rebuild_index:
                    rebuilt = reg.rebuild_address_index()
            result = _with_head(reg, reg.verify(), expect_head)
    except RegistryError as exc:
        raise DriftError(str(exc))
    return dict(result, registry=path, changed=bool(accepted or rebuilt), accepted=accepted, index_rebuilt=rebuilt)


# --------------------------------------------------------------------------- containers

def _same_path(a, b):
    if not a or not b:
        return False
    return os.path.abspath(a) == os.path.abspath(b) or os.path.realpath(a) == os.path.realpath(b)


def _primary_name(names):
    """A container's own name from the listing's ``Names`` (``/name``; link aliases look like ``/other/name``)."""
    stripped = [n.lstrip("/") for n in names or []]
    return next((n for n in stripped if "/" not in n), stripped[0] if stripped else None)


def container_view(entry, network, network_info=None):
    """What drift needs of one entry of the container listing (``GET /containers/json``).

    ``network_info`` is the inspection of ``network`` (``GET /networks/<name>``), ``False`` when that network
    does not exist, or ``None`` (not inspected: the listing alone decides). A container is on the network when
    its listing names the network with that network's id (or with none yet: created, never started), or when
    the network lists it as attached. Its address there is the one it has when running, else the configured one.
    """
    net = None
    if network_info is not False:
        net = ((entry.get("NetworkSettings") or {}).get("Networks") or {}).get(network)
    if net and network_info and net.get("NetworkID") and net["NetworkID"] != network_info.get("Id"):
        net = None  # configured for an earlier network of the same name, removed since
    attached = ((network_info or {}).get("Containers") or {}).get(entry["Id"]) or {}
    ip = None
    if net:
        ip = net.get("IPAddress") or (net.get("IPAMConfig") or {}).get("IPv4Address") or None
    ip = ip or (attached.get("IPv4Address") or "").split("/")[0] or None
    return dict(
        id=entry["Id"],
        name=_primary_name(entry.get("Names")) or entry["Id"][:12],
        state=entry.get("State"),
        labels=entry.get("Labels") or {},
        ip=ip,
        on_network=bool(net) or bool(attached),
        host_network="host" in ((entry.get("NetworkSettings") or {}).get("Networks") or {}),
        image=entry.get("Image"),
        image_id=entry.get("ImageID"),
    )


def _pick(candidates, server_id):
    """The container that is the node (named like it, else labelled, else running, else the first);
    the rest are extra."""
    ordered = sorted(candidates, key=lambda c: (c["name"] != server_id, c["matched_by"] != "label",
                                                c["state"] != "running", c["name"]))
    return ordered[0], ordered[1:]


def _record_age(node, now):
    """Seconds since the registry record last changed (``updated_at``, else ``created_at``); None if unknown."""
    changed_at = node.get("updated_at") or node.get("created_at")
    return max(0.0, now - changed_at) if changed_at else None


def _entry(label, server_id, registry_status, ip, container, drift, node_id=None, record_age=None, node=None):
    node = node or {}
    return dict(
        label=label,
        # The image the node runs, as the registry recorded it (rolling upgrades), else as the container listing
        # says; and the one it ran before its last image change.
        image=node.get("image") or (container or {}).get("image"),
        image_id=node.get("image_id") or (container or {}).get("image_id"),
        previous_image=node.get("previous_image"),
        server_id=server_id,
        node_id=node_id,
        registry_status=registry_status,
        ip=ip,
        record_age=int(record_age) if record_age is not None else None,
        container_name=container["name"] if container else None,
        container_id=container["id"] if container else None,
        container_ip=container["ip"] if container else None,
        container_state=container["state"] if container else None,
        matched_by=container["matched_by"] if container else None,
        drift=drift,
        probe_error=None,
    )


def compare(nodes, containers, registry_path, now=None, stale_after=DEFAULT_STALE_AFTER, former=()):
    """Drift of every active registry node against the container views (see :func:`container_view`).

    A node's container is one labelled for ``registry_path`` with the node's label, or an unlabelled one
    (no ``fenrir.fleet.registry`` label, as the original skill made them) named like the node: its
    ``server_id``, else ``fenrir-<label>``. Containers labelled for another registry, or with another role (the
    registry's tenants), are never this registry's nodes. Unclaimed containers of this registry, and unclaimed unlabelled ``fenrir-*`` containers on the
    fleet network, are ``not in registry``. A ``provisioning`` record unchanged for more than ``stale_after``
    seconds (at ``now``) without a running container is ``stale provisioning``.

    Containers labelled for a registry ``registry_path`` was copied from (``former``) are this registry's.

    Returns the list of per-node entries (registry nodes first, in registry order; then extra containers).
    """
    now = time.time() if now is None else now
    by_label, by_name = {}, {}
    for c in containers:
        if c["labels"].get(ROLE_LABEL) not in (None, ROLE_VALUE):
            continue  # another kind of this registry's containers (a tenant's): never a node's
        theirs = c["labels"].get(REGISTRY_LABEL)
        if theirs:
            if _same_path(theirs, registry_path) or theirs in former:
                by_label.setdefault(c["labels"].get(NODE_LABEL), []).append(dict(c, matched_by="label"))
            # else: another fleet's container; not this registry's drift
        else:
            by_name[c["name"]] = dict(c, matched_by="name")
    active = [n for n in nodes if n["status"] in ACTIVE_STATUSES]
    claimed = {}  # node label -> unlabelled containers named like it (by server_id first, then fenrir-<label>)
    for name_of in (lambda n: n["server_id"], lambda n: NAME_PREFIX + n["label"]):
        for node in active:
            c = by_name.pop(name_of(node), None)
            if c is not None:
                claimed.setdefault(node["label"], []).append(c)

    entries, extras = [], []
    for node in active:
        status = node["status"]
        candidates = by_label.pop(node["label"], []) + claimed.get(node["label"], [])
        container = None
        found = []
        if not candidates:
            found.append("container missing")
        else:
            container, duplicates = _pick(candidates, node["server_id"])
            running = container["state"] == "running"
            if not running:
                found.append("stopped")
            if node.get("network_mode") == "host":
                if not container.get("host_network"):
                    found.append("address differs")  # a host-network node in another network
            elif not container["on_network"] or (container["ip"] != node["ip"]
                                                 and (container["ip"] is not None or running)):
                found.append("address differs")
            if node.get("container_id") and container["id"] != node["container_id"]:
                found.append("container id differs")
            extras.extend(_entry(node["label"], node["server_id"], status, node["ip"], d, ["duplicate container"])
                          for d in duplicates)
        age = _record_age(node, now)
        drift = []
        if status in ("provisioning", "failed"):
            drift.append("status %s" % status)
        if (status == "provisioning" and age is not None and age > stale_after
                and (container is None or container["state"] != "running")):
            drift.append("stale provisioning")
        entries.append(_entry(node["label"], node["server_id"], status, node["ip"], container, drift + found,
                              node.get("node_id"), age, node=node))

    unknown = [(label, c) for label, cs in by_label.items() for c in cs]
    unknown += [(c["name"][len(NAME_PREFIX):], c) for c in by_name.values()
                if c["name"].startswith(NAME_PREFIX) and c["on_network"]]
    for label, c in sorted(unknown, key=lambda lc: (lc[0] is None, lc[0] or "", lc[1]["name"])):
        server_id = c["labels"].get(LABEL_PREFIX + "server_id") or c["name"]
        extras.append(_entry(label, server_id, None, None, c, ["not in registry"]))
    return entries + extras


def _is_node(entry):
    """An entry for a registry node (not for an extra container)."""
    return not ({"not in registry", "duplicate container"} & set(entry["drift"]))


def probe_identity(db, key_file=None):
    """The identity probes sign with: the registry's provisioner identity when the registry holds one and its key
    is at hand, else a throw-away one (returned with ``None`` for its node id: nothing to report)."""
    from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_wire as wire
    seed = None
    try:
        with Registry(db, key_file=key_file, check_mode=True) as reg:
            seed = reg.provisioner_seed(create=False)
    except RegistryError:
        seed = None
    if seed is None:
        return wire.Identity.generate(), None
    identity = wire.Identity(seed)
    return identity, identity.node_id


def probe(entries, port=DEFAULT_NODE_PORT, timeout=DEFAULT_PROBE_TIMEOUT, parallelism=8, identity=None):
    """Ask every running registry node for status and echo (at its container's address, or -- on a Docker host --
    where it answers, ``probe_at``), signed by ``identity`` (the provisioner's); adds drift."""
    todo = [e for e in entries if _is_node(e) and e["container_state"] == "running"
            and (e.get("probe_at") or e["container_ip"])]

    def one(e):
        host, at = e.get("probe_at") or (e["container_ip"], port)
        try:
            probe_once(host, at, e.get("node_id"), timeout=timeout, identity=identity)
        except ProbeError as exc:
            e["probe_error"] = str(exc)
            e["drift"].append("wrong identity" if "wrong identity" in str(exc) else "not answering")
        except (OSError, ValueError) as exc:
            e["probe_error"] = exc.strerror if getattr(exc, "strerror", None) else str(exc)
            e["drift"].append("not answering")
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(todo)))) as pool:
            list(pool.map(one, todo))
    return entries


def image_counts(entries):
    """How many of the registry's nodes run each image: {image reference: count} (``-`` when unknown)."""
    counts = {}
    for e in entries:
        if _is_node(e):
            counts[e.get("image") or "-"] = counts.get(e.get("image") or "-", 0) + 1
    return dict(sorted(counts.items()))


def summarize(entries):
    """Counts: registry nodes checked, containers seen, in sync, drifted, and one count per drift."""
    summary = dict(nodes=sum(1 for e in entries if _is_node(e)),
                   containers=sum(1 for e in entries if e["container_id"]),
                   ok=sum(1 for e in entries if not e["drift"]),
                   drifted=sum(1 for e in entries if e["drift"]))
    for kind in DRIFTS:
        summary[kind.replace(" ", "_")] = sum(1 for e in entries if kind in e["drift"])
    return summary


# --------------------------------------------------------------------------- stale records

def _release_view(node):
    return dict(status=node["status"], reason=node.get("reason"), ip=node.get("ip"),
                address_held=bool(node.get("address_held")))


def stale_reason(age, stale_after):
    return ("stale provisioning: unchanged for %d s (stale_after %d s) without a running container; "
            "released by fenrir.fleet.fleet_status" % (age, stale_after))


def release_stale(db, nodes, labels, stale_after, now=None, check_mode=False):
    """Mark the ``provisioning`` records ``labels`` (found stale by :func:`compare`) failed and free their addresses.

    One registry transaction; each change appends an audit entry (:meth:`Registry.fail` with ``release=True``).
    A record changed since ``nodes`` were read (a run picked it up meanwhile) is left alone. In check mode
    nothing is written. Returns ``(released, before, after, records)``: the labels released (that would be, in
    check mode), ``{label: {status, reason, ip, address_held}}`` before and after, and the fresh records
    (``{label: record}``) to compare again.
    """
    now = time.time() if now is None else now
    seen = {n["label"]: n for n in nodes}
    released, before, after, records = [], {}, {}, {}
    if not labels:
        return released, before, after, records
    if check_mode:
        for label in labels:
            node = seen[label]
            reason = stale_reason(_record_age(node, now) or 0, stale_after)
            records[label] = dict(node, status="failed", reason=reason, container_id=None, address_held=False,
                                  updated_at=now)
            released.append(label)
    else:
        try:
            with Registry(db) as reg:
                with reg.transaction():
                    for label in labels:
                        row = reg.get(label)
                        if row is None:
                            continue
                        if row["status"] == "provisioning" and row["updated_at"] == seen[label]["updated_at"]:
                            reason = stale_reason(_record_age(row, now) or 0, stale_after)
                            if reg.fail(label, reason, release=True):
                                released.append(label)
                        records[label] = reg.get(label)
        except RegistryError as exc:
            raise DriftError("cannot release stale records in %s: %s" % (registry_id(db), exc))
    for label in released:
        before[label] = _release_view(seen[label])
        after[label] = _release_view(records[label])
    return released, before, after, records


# --------------------------------------------------------------------------- the module

def _survey(client, network):
    """Every container of one engine (one listing) and the fleet network there (one inspection), as views."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import NotFound
    listing = client.api.containers(all=True)
    try:
        network_info = client.api.inspect_network(network)
    except NotFound:
        network_info = False
    return [container_view(c, network, network_info) for c in listing]


def _surveys(params, make_client, network):
    """{engine: container views or an error string}: the module's own engine, or every engine of ``engines`` at once."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import APIError, DockerException
    from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_hosts import connect, describe, per_engine
    from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import LOCAL_ENGINE
    engines = params.get("engines")
    if not engines:
        try:
            client = make_client(params)
        except (DockerException, FleetError) as exc:
            raise DriftError("cannot connect to the Docker engine: %s" % exc)
        try:
            return {LOCAL_ENGINE: _survey(client, network)}
        except (APIError, DockerException) as exc:
            raise DriftError("cannot list the containers on the Docker engine: %s"
                             % (getattr(exc, "explanation", None) or exc))
        finally:
            client.close()
    found = {}

    def one(engine):
        try:
            client = connect(params, engine)
        except FleetError as exc:
            found[engine["name"]] = exc.message
            return
        try:
            found[engine["name"]] = _survey(client, network)
        except (APIError, DockerException, OSError) as exc:
            found[engine["name"]] = "cannot list its containers: %s" % describe(exc)
        finally:
            client.close()
    per_engine(engines, one)
    return found


def _compare_all(nodes, surveys, engines, shown, now, stale_after, former=()):
    """Drift of every node against the containers of its own engine; a node whose engine could not be asked is
    ``host unreachable``."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_hosts import engine_name
    addresses = {e["name"]: e.get("address") for e in engines or []}
    entries = []
    for name in sorted(surveys, key=lambda n: (n != "local", n)):
        mine = [n for n in nodes if engine_name(n.get("docker_host")) == name]
        survey = surveys[name]
        if isinstance(survey, str):
            for node in mine:
                age = _record_age(node, now)
                drift = ["status %s" % node["status"]] if node["status"] in ("provisioning", "failed") else []
                entries.append(_entry(node["label"], node["server_id"], node["status"], node["ip"], None,
                                      drift + ["host unreachable"], node.get("node_id"), age))
        else:
            entries += compare(mine, survey, shown, now=now, stale_after=stale_after, former=former)
        for e in entries:
            if "docker_host" not in e:
                e["docker_host"] = name
    by_label = {n["label"]: n for n in nodes}
    for e in entries:
        node = by_label.get(e["label"]) if e["registry_status"] is not None else None
        e["network_mode"] = (node or {}).get("network_mode") or "bridge"
        e["port"] = (node or {}).get("port")
        if node is not None and node.get("port") and e["docker_host"] != "local":
            e["probe_at"] = (addresses.get(e["docker_host"]), node["port"])
            e["endpoint"] = "%s:%d" % e["probe_at"]
    return entries


def fleet_status(params, make_client, check_mode=False):
    """The fleet_status module: read the registry, list the containers and inspect the fleet network once each on
    every engine (all engines at once), compare; with ``release_stale``, release the stale records; with
    ``probe``, probe; with ``inventory``, name the live nodes it lacks."""
    db = params["registry"]
    shown = registry_id(db)  # a path, or the DSN without its password
    network = params.get("network") or DEFAULT_NETWORK
    stale_after = params.get("stale_after")
    stale_after = DEFAULT_STALE_AFTER if stale_after is None else stale_after
    if stale_after < 0:
        raise DriftError("stale_after must be 0 or more seconds, not %s" % stale_after)
    nodes = read_nodes(db, include_destroyed=False)
    try:
        former = former_locations(db)
    except RegistryError as exc:
        raise DriftError(exc.bare_message)
    surveys = _surveys(params, make_client, network)
    engines = params.get("engines") or []
    now = time.time()
    entries = _compare_all(nodes, surveys, engines, shown, now, stale_after, former)
    result = dict(changed=False, registry=shown, network=network, released=[])
    if params.get("release_stale"):
        stale = [e["label"] for e in entries if _is_node(e) and "stale provisioning" in e["drift"]]
        released, before, after, records = release_stale(db, nodes, stale, stale_after, now=now,
                                                         check_mode=check_mode)
        if records:
            nodes = [records.get(n["label"], n) for n in nodes]
            entries = _compare_all(nodes, surveys, engines, shown, now, stale_after, former)
        result.update(changed=bool(released), released=released, diff=dict(before=before, after=after))
    inventory = set(params.get("inventory") or ())
    # An inventory that holds none of the registry's nodes describes another fleet: nothing to say about this one.
    if inventory & {n["label"] for n in nodes}:
        for e in entries:
            if _is_node(e) and e["label"] not in inventory:
                e["drift"].append("not in inventory")
    if params.get("probe"):
        identity, result["provisioner_node_id"] = probe_identity(db, params.get("key_file"))
        probe(entries, port=params.get("port") or DEFAULT_NODE_PORT,
              timeout=params.get("probe_timeout") or DEFAULT_PROBE_TIMEOUT, identity=identity)
    for e in entries:
        e.pop("probe_at", None)
    result.update(nodes=entries, in_sync=not any(e["drift"] for e in entries), summary=summarize(entries),
                  images=image_counts(entries))
    if engines:
        result["hosts"] = _hosts_view(db, nodes, surveys)
    return result


def _hosts_view(db, nodes, surveys):
    """Every Docker host of the registry beside its nodes: its record, how many live nodes it has, and whether its
    engine answered this status run."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import read_hosts
    try:
        hosts = read_hosts(db)
    except RegistryError as exc:
        raise DriftError(exc.bare_message)
    out = []
    for host in hosts:
        survey = surveys.get(host["name"])
        out.append(dict(host, nodes=sum(1 for n in nodes if n.get("docker_host") == host["name"]),
                        engine="answered" if isinstance(survey, list) else ("not asked" if survey is None else "unreachable"),
                        engine_problem=survey if isinstance(survey, str) else None))
    return out
