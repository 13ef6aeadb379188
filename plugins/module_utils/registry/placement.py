# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a node lives: its Docker host, its network mode, and what it holds there (mixed into :class:`Registry`).

* :meth:`PlacementMixin.place` -- a node on a Docker host (``None`` = the controller's own engine) in ``bridge``
  mode holds an address of that host's pool (its ``fenrir-fleet`` /24), and a port of the host's port pool when
  its node port is published; in ``host`` mode it holds a port of the host's pool and no address.  A live node
  asked for on another host (or in another mode) is *moved* in one audited change (``move``): its address and
  port released, new ones taken, its container id cleared.  Everything else about it stays (label, node id,
  identity).
* :meth:`PlacementMixin.previous_placement` -- for a node whose move is not finished yet (no container made on
  the new host since), where it was: read from the node's own audit entries, so a run that dies (or a host that
  is unreachable) in the middle of a move is finished by a later run.
* :meth:`PlacementMixin.host_usage` -- live nodes per Docker host, for placement by capacity.

All of it runs inside the registry's write transaction (call inside ``transaction()``), like every allocation.
"""

from __future__ import annotations

import ipaddress
import json
import time

from ansible_collections.fenrir.fleet.plugins.module_utils.naming import container_name
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import NETWORK_MODES, RegistryError, public

# A node's fields a placement may set from its spec (the rest are the placement's own).
SPEC_FIELDS = ("server_id", "provider", "location", "nonce", "image")


def holds_place(row):
    """Whether a record holds its place now: an address, or (host network) a port."""
    if row is None or row["status"] == "destroyed":
        return False
    return row["ip_int"] is not None or (row["network_mode"] == "host" and row["port"] is not None)


class PlacementMixin:
    """Placement of nodes on Docker hosts (mixed into :class:`Registry`)."""

    def place(self, spec, pool=None, docker_host=None, network_mode="bridge", ports=None, host_address=None):
        """Make ``spec['label']`` a node on ``docker_host`` in ``network_mode``; returns (before, after, changed).

        ``pool``: the address pool of the host (bridge).  ``ports``: ``(start, end, step)`` of the host's port pool
        when the node needs a port (host network, or a published node port); None = no port.  ``host_address``:
        the host's address, the ``ip`` shown for a host-network node (it holds no address of its own).
        ``spec``: label, ip (a pinned address, bridge only), server_id, provider, location, nonce, image.
        """
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry.allocation import free_port
        label = spec["label"]
        if network_mode not in NETWORK_MODES:
            raise RegistryError("network_mode %r is not one of %s" % (network_mode, ", ".join(NETWORK_MODES)),
                                label=label, field="network_mode")
        row = self.get_row(label)
        self._check_untampered(label, row)
        if network_mode == "host" and spec.get("ip"):
            raise RegistryError("a host-network node has no address of its own: it answers on its host's address "
                                "and a port; unset ip", label=label, field="ip")
        if network_mode == "host" and not ports:
            raise RegistryError("a host-network node needs a port pool", label=label, field="network_mode")
        pinned = pool.check_pinned(spec["ip"], label) if spec.get("ip") else None
        changes = {k: spec[k] for k in SPEC_FIELDS if spec.get(k) is not None}
        changes.update(docker_host=docker_host, network_mode=network_mode)
        live = holds_place(row)
        same = live and row["docker_host"] == docker_host and row["network_mode"] == network_mode
        if same and network_mode == "bridge":
            current = ipaddress.IPv4Address(row["ip_int"])
            if current not in pool.subnet:
                raise RegistryError("holds %s, outside the subnet %s of its Docker host %s; decommission it before "
                                    "moving it" % (current, pool.subnet, docker_host or "local"), label=label,
                                    field="ip")
            if pinned is not None and pinned != current:
                raise RegistryError("pinned ip %s differs from the address %s the node already holds; decommission "
                                    "the node to move it" % (pinned, current), label=label, field="ip")
        elif same:
            changes["ip"] = host_address
        else:
            if network_mode == "bridge":
                ip_int = self._free_address(label, row, pool, pinned)
                changes.update(ip=str(ipaddress.IPv4Address(ip_int)), ip_int=ip_int)
            else:
                changes.update(ip=host_address, ip_int=None)
            changes.update(status="provisioning", reason=None, container_id=None, port=None)
        if ports:
            port = row["port"] if same and row["port"] is not None else None
            if port is None:
                start, end, step = ports
                port = free_port(self.store, docker_host, start, end, step)
                if port is None:
                    raise RegistryError("no free port %d-%d (step %d) on Docker host %s"
                                        % (start, end, step, docker_host or "local"), label=label, field="port")
            changes["port"] = port
        elif row is not None and row["port"] is not None:
            changes["port"] = None
        if row is None:
            now = time.time()
            record = dict(label=label, server_id=spec.get("server_id") or container_name(label),
                          provider=spec.get("provider") or "docker", status="provisioning", created_at=now,
                          updated_at=now)
            record.update(changes)
            self._insert(record)
            after = self.get_row(label)
            self._audit("allocate", label, None, after)
            return None, public(after), True
        action = "update" if same else ("move" if live else "allocate")
        changed = self._change(action, label, changes, checked=True)
        return public(row), public(self.get_row(label)), changed

    def _free_address(self, label, row, pool, pinned):
        """The address a bridge node gets: the pinned one, its previous one when free and in the pool, else the
        lowest free one (as :meth:`Registry.ensure`)."""
        if pinned is not None:
            holder = self.holder_of(int(pinned))
            if holder is not None and holder != label:
                raise RegistryError("pinned ip %s is already held by node %r" % (pinned, holder), label=label,
                                    field="ip")
            return int(pinned)
        if row is not None and row["ip"]:
            try:
                previous = ipaddress.IPv4Address(row["ip"])
            except ValueError:
                previous = None
            if previous is not None and pool.start <= previous <= pool.end and self.holder_of(int(previous)) is None:
                return int(previous)
        ip_int = self.next_free(pool)
        if ip_int is None:
            raise RegistryError("address pool %s-%s is exhausted (%d addresses, all held)"
                                % (pool.start, pool.end, pool.size), label=label, field="ip")
        return ip_int

    def previous_placement(self, label):
        """Where a node was before a move that is not finished: ``dict(docker_host, container_id, network_mode)``,
        or None (never moved, the move finished -- a container was recorded on the new host since --, or the
        node was destroyed before it was placed again).  Read from the node's audit entries, newest first."""
        row = self.get_row(label)
        if row is None:
            return None
        current = row["docker_host"]
        for entry in self.store.all("SELECT after FROM audit WHERE kind = 'node' AND label = ? ORDER BY height DESC",
                                    (label,)):
            if entry["after"] is None:
                return None
            after = json.loads(entry["after"])
            if after.get("docker_host") != current:
                if after.get("status") == "destroyed":
                    return None
                return dict(docker_host=after.get("docker_host"), container_id=after.get("container_id"),
                            network_mode=after.get("network_mode") or "bridge")
            if after.get("container_id"):
                return None
        return None

    def host_usage(self):
        """{docker_host (None = the local engine): number of live nodes on it}."""
        rows = self.store.all("SELECT docker_host, count(*) AS n FROM nodes WHERE status != 'destroyed'"
                              " GROUP BY docker_host")
        return {r["docker_host"]: r["n"] for r in rows}

    def live_tenants_on(self, docker_host):
        """Live tenants recorded on ``docker_host``: [{tenant_id, prefix}]."""
        rows = self.store.all("SELECT tenant_id, prefix FROM tenants WHERE docker_host = ? AND status != 'destroyed'"
                              " ORDER BY tenant_id", (docker_host,))
        return [dict(tenant_id=r["tenant_id"], prefix=r["prefix"]) for r in rows]

    def live_nodes_on(self, docker_host):
        """Labels of live nodes recorded on ``docker_host``."""
        rows = self.store.all("SELECT label FROM nodes WHERE docker_host = ? AND status != 'destroyed'"
                              " ORDER BY label", (docker_host,))
        return [r["label"] for r in rows]
