# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Allocation: node addresses from a pool (held runs), host subnets from the fleet range, ports per host.

Every allocation runs inside the registry's write transaction, which one writer holds at a time (SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's advisory lock), and lands in a UNIQUE column (``nodes.ip_int``,
``hosts.subnet_int``, ``(docker_host, port)`` of nodes): whatever runs at once, nothing is handed out twice.

Addresses: ``held_runs`` keeps the held addresses (``ip_int`` of every record) as maximal runs of
consecutive addresses, in the same transactions as the records.  The lowest free address from any point is
then one index probe -- the run containing the point ends just before it -- whatever the fleet's size.
"""

from __future__ import annotations

import ipaddress
import itertools

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import (
    DEFAULT_FLEET_RANGE, DEFAULT_GATEWAY, DEFAULT_POOL_END, DEFAULT_POOL_START, DEFAULT_SUBNET, RegistryError,
    runs_of, span)


class Pool:
    """The network a registry allocates from: subnet, gateway and the dynamic range."""

    def __init__(self, subnet=DEFAULT_SUBNET, gateway=DEFAULT_GATEWAY,
                 start=DEFAULT_POOL_START, end=DEFAULT_POOL_END):
        try:
            self.subnet = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as exc:
            raise RegistryError("subnet %r is not an IPv4 network: %s" % (subnet, exc), field="subnet")
        if self.subnet.prefixlen < 16 or self.subnet.prefixlen > 29:
            raise RegistryError("subnet %s: prefix length must be between /16 and /29" % subnet, field="subnet")
        self.gateway = self._address(gateway, "gateway")
        self.start = self._address(start, "pool_start")
        self.end = self._address(end, "pool_end")
        if self.start > self.end:
            raise RegistryError("pool_start %s is after pool_end %s" % (self.start, self.end), field="pool_start")
        reserved = {self.subnet.network_address: "the network address",
                    self.subnet.broadcast_address: "the broadcast address",
                    self.gateway: "the gateway"}
        for addr, what in reserved.items():
            if self.start <= addr <= self.end:
                raise RegistryError("pool %s-%s includes %s %s" % (self.start, self.end, what, addr),
                                    field="pool_start")

    @classmethod
    def for_subnet(cls, subnet):
        """The pool of a host's /24 as the local engine's: gateway .1, addresses .10-.249."""
        net = ipaddress.IPv4Network(subnet)
        base = int(net.network_address)
        return cls(str(net), str(ipaddress.IPv4Address(base + 1)), str(ipaddress.IPv4Address(base + 10)),
                   str(ipaddress.IPv4Address(min(base + 249, int(net.broadcast_address) - 1))))

    def _address(self, value, field):
        try:
            addr = ipaddress.IPv4Address(value)
        except ValueError:
            raise RegistryError("%r is not an IPv4 address" % (value,), field=field)
        if addr not in self.subnet or addr in (self.subnet.network_address, self.subnet.broadcast_address):
            raise RegistryError("%s is not a host address of subnet %s" % (addr, self.subnet), field=field)
        return addr

    @property
    def size(self):
        return int(self.end) - int(self.start) + 1

    def check_pinned(self, value, label):
        """A pinned address must be a usable host address of the subnet (it may lie outside the pool)."""
        try:
            addr = ipaddress.IPv4Address(value)
        except ValueError:
            raise RegistryError("pinned ip %r is not an IPv4 address" % (value,), label=label, field="ip")
        if addr not in self.subnet:
            raise RegistryError("pinned ip %s is outside subnet %s" % (addr, self.subnet), label=label, field="ip")
        if addr == self.gateway:
            raise RegistryError("pinned ip %s is the network's gateway" % addr, label=label, field="ip")
        if addr in (self.subnet.network_address, self.subnet.broadcast_address):
            raise RegistryError("pinned ip %s is the subnet's network or broadcast address" % addr,
                                label=label, field="ip")
        return addr

    def as_dict(self):
        return dict(subnet=str(self.subnet), gateway=str(self.gateway),
                    pool_start=str(self.start), pool_end=str(self.end))


class HeldRuns:
    """The index of held addresses (``held_runs``) over one store; call inside a write transaction."""

    def __init__(self, store):
        self.store = store

    def holder_of(self, ip_int):
        row = self.store.one("SELECT label FROM nodes WHERE ip_int = ?", (ip_int,))
        return row["label"] if row else None

    def run_at(self, ip_int):
        """The run starting at or before ``ip_int`` that starts last: (run_start, run_end) or None."""
        row = self.store.one("SELECT run_start, run_end FROM held_runs WHERE run_start <= ?"
                             " ORDER BY run_start DESC LIMIT 1", (ip_int,))
        return (row["run_start"], row["run_end"]) if row is not None else None

    def next_free(self, pool):
        """The lowest address of the pool's range that no record holds, or None when all are held.

        Two index probes however full the registry is.  The answer is checked against the records; should the
        runs be out of step with them (edited behind the registry's back), they are rebuilt first."""
        lo, hi = int(pool.start), int(pool.end)
        for attempt in (1, 2):
            run = self.run_at(lo)
            candidate = run[1] + 1 if run is not None and run[1] >= lo else lo
            if candidate > hi:
                held = self.store.scalar("SELECT count(*) AS n FROM nodes WHERE ip_int BETWEEN ? AND ?", (lo, hi))
                if held >= hi - lo + 1 or attempt == 2:
                    return None
            elif self.holder_of(candidate) is None:
                return candidate
            self.rebuild()
        return None

    def hold(self, ip_int):
        """``ip_int`` became held (the record is already written): merge it into the runs."""
        left = self.run_at(ip_int)
        if left is not None and left[1] >= ip_int:
            return self.rebuild()  # already listed as held: out of step with the records
        right = self.store.one("SELECT run_end FROM held_runs WHERE run_start = ?", (ip_int + 1,))
        end = ip_int
        if right is not None:
            end = right["run_end"]
            self.store.execute("DELETE FROM held_runs WHERE run_start = ?", (ip_int + 1,))
        if left is not None and left[1] == ip_int - 1:
            self.store.execute("UPDATE held_runs SET run_end = ? WHERE run_start = ?", (end, left[0]))
        else:
            self.store.execute("INSERT INTO held_runs (run_start, run_end) VALUES (?, ?)", (ip_int, end))

    def release(self, ip_int):
        """``ip_int`` is no longer held (the record is already written): cut it out of its run."""
        run = self.run_at(ip_int)
        if run is None or run[1] < ip_int:
            return self.rebuild()  # not listed as held: out of step with the records
        start, end = run
        if start == ip_int:
            self.store.execute("DELETE FROM held_runs WHERE run_start = ?", (start,))
        else:
            self.store.execute("UPDATE held_runs SET run_end = ? WHERE run_start = ?", (ip_int - 1, start))
        if end > ip_int:
            self.store.execute("INSERT INTO held_runs (run_start, run_end) VALUES (?, ?)", (ip_int + 1, end))

    def runs(self):
        return [(r["run_start"], r["run_end"]) for r in
                self.store.all("SELECT run_start, run_end FROM held_runs ORDER BY run_start")]

    def held(self):
        rows = self.store.all("SELECT ip_int FROM nodes WHERE ip_int IS NOT NULL ORDER BY ip_int")
        return [r["ip_int"] for r in rows]

    def rebuild(self):
        held = self.held()
        self.store.execute("DELETE FROM held_runs")
        if held:
            self.store.executemany("INSERT INTO held_runs (run_start, run_end) VALUES (?, ?)", list(runs_of(held)))

    def problem(self):
        for want, have in itertools.zip_longest(runs_of(self.held()), self.runs()):
            if want != have:
                return ("the index of held addresses (held_runs) does not match the records: it lists %s where the "
                        "records hold %s. It was changed behind the registry's back; allocation would skip free "
                        "addresses or try held ones" % (span(have), span(want)))
        return None


# --------------------------------------------------------------------------- host subnets and ports

def fleet_range(value=DEFAULT_FLEET_RANGE):
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise RegistryError("fleet range %r is not an IPv4 network: %s" % (value, exc), field="fleet_range",
                            kind="host")
    if net.prefixlen > 24:
        raise RegistryError("fleet range %s is smaller than one /24" % net, field="fleet_range", kind="host")
    return net


def free_subnet(store, fleet=DEFAULT_FLEET_RANGE, reserved=(DEFAULT_SUBNET,)):
    """The lowest /24 of ``fleet`` that no host holds and that is not ``reserved`` (the local engine's):
    ``(subnet, subnet_int)``, or None.  Reads the (few) held subnets of the range in one ordered query."""
    net = fleet_range(fleet)
    lo, hi = int(net.network_address), int(net.broadcast_address)
    taken = {r["subnet_int"] for r in store.all("SELECT subnet_int FROM hosts WHERE subnet_int BETWEEN ? AND ?",
                                                (lo, hi))}
    taken |= {int(ipaddress.IPv4Network(r).network_address) for r in reserved}
    for base in range(lo, hi + 1, 256):
        if base not in taken:
            return str(ipaddress.IPv4Network((base, 24))), base
    return None


def free_port(store, docker_host, start, end, step=1):
    """The lowest port ``start + k*step`` <= ``end`` no node on ``docker_host`` holds, or None."""
    held = {r["port"] for r in store.all(
        "SELECT port FROM nodes WHERE port IS NOT NULL AND COALESCE(docker_host, '') = ? AND port BETWEEN ? AND ?",
        (docker_host or "", start, end))}
    for port in range(start, end + 1, step):
        if port not in held:
            return port
    return None
