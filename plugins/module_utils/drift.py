# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Looking at the fleet without touching it: the registry read-only, its audit chain, and its drift from Docker.

* :func:`read_nodes` reads ``fleet.db`` through a ``mode=ro`` connection: never migrated, never written.
  The inventory plugin ``fenrir.fleet.fleet`` and :func:`fleet_status` use it.
* :func:`audit` verifies the audit chain with :meth:`Registry.verify` (registry opened in check mode).
* :func:`compare` sets the registry's active nodes beside the node containers on the engine and says,
  per node, how they differ; :func:`fleet_status` lists the containers once and calls it.
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import ProbeError, probe_once
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    ACTIVE_STATUSES, SCHEMA_VERSION, Registry, RegistryError, public)

# The labels fenrir.fleet.knarr_container puts on every node container (see module_utils/containers.py).
LABEL_PREFIX = "fenrir.fleet."
ROLE_LABEL = LABEL_PREFIX + "role"
ROLE_VALUE = "knarr-node"
NODE_LABEL = LABEL_PREFIX + "label"
REGISTRY_LABEL = LABEL_PREFIX + "registry"

DEFAULT_NETWORK = "fenrir-fleet"
DEFAULT_NODE_PORT = 9010
DEFAULT_PROBE_TIMEOUT = 2.0

# Every drift a node can show, and its key in the summary.
DRIFTS = (
    "status provisioning",   # the registry says the node is still being provisioned
    "status failed",         # the registry says provisioning failed (see its reason)
    "container missing",     # no container of this registry carries the node's label
    "stopped",               # the container exists but is not running
    "address differs",       # the container's address on the fleet network is not the registry's
    "container id differs",  # the container is not the one the registry recorded (recreated behind its back)
    "not answering",         # probe: the node did not answer status and echo
    "wrong identity",        # probe: the node answered with another node id than the registry's
    "not in registry",       # a container of this registry whose label is not an active node
    "duplicate container",   # a second container of this registry with the same node label
)


class DriftError(Exception):
    """The registry or the engine could not be read; the message says which and why."""


# --------------------------------------------------------------------------- the registry, read-only

def open_readonly(db):
    """An SQLite connection to ``db`` that cannot write, after checking it is a schema-2 registry."""
    path = os.path.abspath(os.path.expanduser(db))
    if os.path.isdir(path):
        raise DriftError("the fleet registry %s is a directory; give the path of fleet.db" % path)
    if not os.path.isfile(path):
        raise DriftError("the fleet registry %s does not exist" % path)
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % quote(path), uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise DriftError("cannot open the fleet registry %s read-only: %s" % (path, exc))
    conn.row_factory = sqlite3.Row
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DriftError("%s is not a usable fleet registry: %s" % (path, exc))
    if version != SCHEMA_VERSION or "nodes" not in tables:
        conn.close()
        if version > SCHEMA_VERSION:
            raise DriftError("the fleet registry %s has schema version %d; this collection reads version %d. "
                             "Use a newer fenrir.fleet." % (path, version, SCHEMA_VERSION))
        origin = (" (written by the original fleet-provision-docker-lite skill)" if "fleet_nodes" in tables
                  else "")
        raise DriftError("the fleet registry %s has schema version %d%s, not %d; it is only read here, never "
                         "migrated. Migrate it by running any fenrir.fleet.fleet_node task (or "
                         "playbooks/provision.yml) against it once." % (path, version, origin, SCHEMA_VERSION))
    return conn


def read_nodes(db, include_destroyed=False):
    """Every node record (public fields only, no secrets), ordered by address, read in one snapshot.

    Each record also has ``address_held``: whether the node holds its address (``ip``) right now.
    A destroyed node, or a failed one whose address was released, keeps ``ip`` as its last address.
    """
    conn = open_readonly(db)
    try:
        sql = "SELECT * FROM nodes"
        if not include_destroyed:
            sql += " WHERE status != 'destroyed'"
        rows = conn.execute(sql + " ORDER BY ip_int IS NULL, ip_int, label").fetchall()
    except sqlite3.DatabaseError as exc:
        raise DriftError("cannot read the nodes of the fleet registry %s: %s" % (os.path.abspath(db), exc))
    finally:
        conn.close()
    return [dict(public(r), address_held=r["ip_int"] is not None) for r in rows]


# --------------------------------------------------------------------------- the audit chain

def audit(db, key_file=None):
    """Verify the audit chain of ``db``; returns dict(ok, entries, problem, height, label, db).

    The registry is opened in check mode (nothing is written) after a read-only look that refuses a
    missing file or one with another schema version.  Chain and rows are read in one snapshot, so a
    concurrent writer cannot make an intact registry look edited.
    """
    path = os.path.abspath(os.path.expanduser(db))
    open_readonly(path).close()
    try:
        with Registry(path, key_file=key_file, check_mode=True) as reg:
            result = reg.verify()  # one read transaction: chain and rows from the same snapshot
    except RegistryError as exc:
        raise DriftError(str(exc))
    except sqlite3.DatabaseError as exc:
        raise DriftError("cannot read the audit trail of %s: %s" % (path, exc))
    return dict(result, db=path)


# --------------------------------------------------------------------------- containers

def _same_path(a, b):
    if not a or not b:
        return False
    return os.path.abspath(a) == os.path.abspath(b) or os.path.realpath(a) == os.path.realpath(b)


def container_view(entry, network, inspect=None):
    """What drift needs of one entry of the container listing.

    ``inspect`` (callable, id -> inspect dict) is only used when the listing carries no network settings.
    The address is the one the container has on ``network`` when running, else the one configured for it.
    """
    settings = entry.get("NetworkSettings")
    if settings is None and inspect is not None:
        settings = (inspect(entry["Id"]) or {}).get("NetworkSettings")
    net = ((settings or {}).get("Networks") or {}).get(network)
    ip = None
    if net:
        ip = net.get("IPAddress") or (net.get("IPAMConfig") or {}).get("IPv4Address") or None
    names = entry.get("Names") or []
    return dict(
        id=entry["Id"],
        name=names[0].lstrip("/") if names else entry["Id"][:12],
        state=entry.get("State"),
        labels=entry.get("Labels") or {},
        ip=ip,
        on_network=bool(net),
    )


def _pick(candidates, server_id):
    """The container that is the node (named like it, else running, else the first); the rest are extra."""
    ordered = sorted(candidates, key=lambda c: (c["name"] != server_id, c["state"] != "running", c["name"]))
    return ordered[0], ordered[1:]


def _entry(label, server_id, registry_status, ip, container, drift, node_id=None):
    return dict(
        label=label,
        server_id=server_id,
        node_id=node_id,
        registry_status=registry_status,
        ip=ip,
        container_name=container["name"] if container else None,
        container_id=container["id"] if container else None,
        container_ip=container["ip"] if container else None,
        container_state=container["state"] if container else None,
        drift=drift,
        probe_error=None,
    )


def compare(nodes, containers, registry_path):
    """Drift of every active registry node against the container views (see :func:`container_view`).

    Only containers labelled for ``registry_path`` count. Returns the list of per-node entries
    (registry nodes first, in registry order; then containers the registry does not know).
    """
    by_label = {}
    for c in containers:
        if _same_path(c["labels"].get(REGISTRY_LABEL), registry_path):
            by_label.setdefault(c["labels"].get(NODE_LABEL), []).append(c)
    entries = []
    extras = []
    for node in nodes:
        if node["status"] not in ACTIVE_STATUSES:
            continue
        drift = []
        if node["status"] in ("provisioning", "failed"):
            drift.append("status %s" % node["status"])
        candidates = by_label.pop(node["label"], [])
        container = None
        if not candidates:
            drift.append("container missing")
        else:
            container, duplicates = _pick(candidates, node["server_id"])
            running = container["state"] == "running"
            if not running:
                drift.append("stopped")
            if not container["on_network"] or (container["ip"] != node["ip"]
                                                and (container["ip"] is not None or running)):
                drift.append("address differs")
            if node.get("container_id") and container["id"] != node["container_id"]:
                drift.append("container id differs")
            extras.extend(_entry(node["label"], node["server_id"], node["status"], node["ip"], d,
                                 ["duplicate container"]) for d in duplicates)
        entries.append(_entry(node["label"], node["server_id"], node["status"], node["ip"], container, drift,
                              node.get("node_id")))
    for label in sorted(by_label, key=lambda k: (k is None, k or "")):
        for c in sorted(by_label[label], key=lambda c: c["name"]):
            extras.append(_entry(label, c["labels"].get(LABEL_PREFIX + "server_id") or c["name"], None, None, c,
                                 ["not in registry"]))
    return entries + extras


def _is_node(entry):
    """An entry for a registry node (not for an extra container)."""
    return not ({"not in registry", "duplicate container"} & set(entry["drift"]))


def probe(entries, port=DEFAULT_NODE_PORT, timeout=DEFAULT_PROBE_TIMEOUT, parallelism=8):
    """Ask every running registry node for status and echo (at its container's address); adds drift."""
    todo = [e for e in entries if _is_node(e) and e["container_state"] == "running" and e["container_ip"]]

    def one(e):
        try:
            probe_once(e["container_ip"], port, e.get("node_id"), timeout=timeout)
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


def summarize(entries):
    """Counts: registry nodes checked, containers seen, in sync, drifted, and one count per drift."""
    summary = dict(nodes=sum(1 for e in entries if _is_node(e)),
                   containers=sum(1 for e in entries if e["container_id"]),
                   ok=sum(1 for e in entries if not e["drift"]),
                   drifted=sum(1 for e in entries if e["drift"]))
    for kind in DRIFTS:
        summary[kind.replace(" ", "_")] = sum(1 for e in entries if kind in e["drift"])
    return summary


def fleet_status(params, make_client):
    """The fleet_status module: read the registry, list the node containers once, compare (and probe)."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (
        APIError, DockerException, NotFound)

    db = os.path.abspath(os.path.expanduser(params["db"]))
    network = params.get("network") or DEFAULT_NETWORK
    nodes = read_nodes(db, include_destroyed=False)
    try:
        client = make_client(params)
    except (DockerException, ValueError) as exc:
        raise DriftError("cannot connect to the Docker engine: %s" % exc)
    try:
        listing = client.api.containers(all=True, filters={"label": "%s=%s" % (ROLE_LABEL, ROLE_VALUE)})

        def inspect(cid):
            try:
                return client.api.inspect_container(cid)
            except NotFound:  # removed since the listing
                return None
        containers = [container_view(c, network, inspect) for c in listing]
    except (APIError, DockerException) as exc:
        raise DriftError("cannot list the node containers on the Docker engine: %s"
                         % (getattr(exc, "explanation", None) or exc))
    finally:
        client.close()
    entries = compare(nodes, containers, db)
    if params.get("probe"):
        probe(entries, port=params.get("node_port") or DEFAULT_NODE_PORT,
              timeout=params.get("probe_timeout") or DEFAULT_PROBE_TIMEOUT)
    return dict(changed=False, db=db, network=network, nodes=entries,
                in_sync=not any(e["drift"] for e in entries), summary=summarize(entries))
