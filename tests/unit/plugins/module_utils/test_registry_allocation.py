"""Address allocation: which address a node gets (unchanged semantics) and what it costs (not growing with
the registry, also for the first allocation from a pool and right after a freed low address is reused)."""

import ipaddress
import random
import sqlite3

import pytest

from registry_testlib import ip_of as ip, make_v4, open_reg, sqlite_steps

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    SCHEMA_VERSION, Pool, Registry, RegistryError,
)

POOL = Pool("10.9.0.0/24", "10.9.0.1", "10.9.0.10", "10.9.0.40")


def lowest_free(reg, pool):
    held = set(reg.runs.held())
    return next((a for a in range(int(pool.start), int(pool.end) + 1) if a not in held), None)


def test_allocation_is_the_documented_choice_under_random_operations(loc):
    """Pinned address, else the node's previous address when in the pool and free, else the lowest free
    address of the pool -- checked against a brute-force reference after every step."""
    rng = random.Random(7)
    other = Pool("10.9.0.0/24", "10.9.0.1", "10.9.0.20", "10.9.0.60")   # an overlapping second pool
    labels = ["n%d" % i for i in range(45)]
    with open_reg(loc, actor="fuzz") as reg:
        for step in range(400):
            label = rng.choice(labels)
            pool = POOL if rng.random() < 0.8 else other
            row = reg.get_row(label)
            op = rng.random()
            with reg.transaction():
                if row is not None and row["ip_int"] is not None and op < 0.35:
                    if rng.random() < 0.5:
                        reg.destroy(label)
                    else:
                        reg.fail(label, "fuzz", release=True)
                    continue
                if row is not None and row["ip_int"] is not None:
                    continue
                if op > 0.93:
                    pinned = int(POOL.subnet.network_address) + rng.randrange(2, 255)
                    if reg.holder_of(pinned) is None:
                        assert reg.ensure(dict(label=label, ip=ip(pinned)), pool)[1]["ip"] == ip(pinned)
                    continue
                previous = row["ip"] if row is not None else None
                if previous and pool.start <= ipaddress.IPv4Address(previous) <= pool.end \
                        and reg.holder_of(int(ipaddress.IPv4Address(previous))) is None:
                    expected = previous
                else:
                    free = lowest_free(reg, pool)
                    expected = ip(free) if free is not None else None
                if expected is None:
                    with pytest.raises(RegistryError, match="exhausted"):
                        reg.ensure(dict(label=label), pool)
                else:
                    assert reg.ensure(dict(label=label), pool)[1]["ip"] == expected, step
        assert reg.verify()["ok"] is True


BIG = Pool("10.50.0.0/16", "10.50.0.1", "10.50.0.10", "10.50.255.200")


def _costs(path, size):
    """SQLite VM steps of: a steady allocation, the first allocation from a pool never used before, and the
    allocation right after a freed low address was reused."""
    with Registry(path, actor="cost") as reg:
        with reg.transaction():
            for i in range(size):
                reg.ensure(dict(label="seed-%d" % i), BIG)
        with reg.transaction():
            steady = sqlite_steps(reg.conn, lambda: reg.ensure(dict(label="steady"), BIG))
        fresh_pool = Pool("10.50.0.0/16", "10.50.0.1", "10.50.0.10", "10.50.255.199")
        with reg.transaction():
            new_pool = sqlite_steps(reg.conn, lambda: reg.ensure(dict(label="new-pool"), fresh_pool))
        with reg.transaction():
            reg.destroy("seed-3")
        with reg.transaction():
            assert reg.ensure(dict(label="reuser"), BIG)[1]["ip"] == "10.50.0.13"
        with reg.transaction():
            after_reuse = sqlite_steps(reg.conn, lambda: reg.ensure(dict(label="after-reuse"), BIG))
        assert after_reuse[1][1]["ip"] == ip(int(BIG.start) + size + 2)
        assert reg.verify()["ok"] is True
    return dict(steady=steady[0], new_pool=new_pool[0], after_reuse=after_reuse[0])


def test_allocation_cost_does_not_grow_with_the_registry(tmp_path):
    small = _costs(str(tmp_path / "small.db"), 30)
    large = _costs(str(tmp_path / "large.db"), 3000)
    for case in small:
        assert large[case] < small[case] * 1.5, (case, small, large)


def _schema_3(path):
    """A registry as the schema-3 collection left it: a pool_cursor table, no held_runs (a, c-e and pinned p
    held; b destroyed)."""
    make_v4(path, POOL, ["a", "b", "c", "d", "e"], destroyed=["b"])
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO nodes (label, server_id, ip, ip_int, status, created_at, updated_at)"
                 " VALUES ('p', 'fenrir-p', '10.9.0.200', ?, 'provisioning', 0, 0)",
                 (int(ipaddress.IPv4Address("10.9.0.200")),))
    conn.execute("DROP TABLE held_runs")
    conn.execute("DROP INDEX IF EXISTS audit_label")
    conn.execute("DROP TABLE IF EXISTS registry_meta")
    conn.execute("CREATE TABLE pool_cursor (lo INTEGER NOT NULL, hi INTEGER NOT NULL, lowest_free INTEGER NOT NULL,"
                 " PRIMARY KEY (lo, hi))")
    conn.execute("INSERT INTO pool_cursor VALUES (?, ?, ?)", (int(POOL.start), int(POOL.end), int(POOL.start) + 2))
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()


def test_schema_3_registry_is_migrated_in_place(tmp_path):
    path = str(tmp_path / "fleet.db")
    _schema_3(path)
    with Registry(path, actor="v5") as reg:
        assert reg.schema_version == SCHEMA_VERSION == 5
        tables = reg._tables()
        assert "pool_cursor" not in tables and "held_runs" in tables
        pinned = int(ipaddress.IPv4Address("10.9.0.200"))
        start = int(POOL.start)
        assert reg.runs.runs() == [(start, start), (start + 2, start + 4), (pinned, pinned)]
        with reg.transaction():
            assert reg.ensure(dict(label="f"), POOL)[1]["ip"] == "10.9.0.11"
            assert reg.ensure(dict(label="g"), POOL)[1]["ip"] == "10.9.0.15"
        # 'p' was added without a trail (behind the registry's back): still reported, nothing laundered
        result = reg.verify()
        assert result["ok"] is False and result["label"] == "p"


def test_check_mode_plans_the_migration_on_a_copy(tmp_path):
    path = str(tmp_path / "fleet.db")
    _schema_3(path)
    with Registry(path, actor="plan", check_mode=True) as reg:
        assert reg.schema_version == 5
        with reg.transaction():
            assert reg.ensure(dict(label="b"), POOL)[1]["ip"] == "10.9.0.11"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    conn.close()
    assert not (tmp_path / "fleet.key").exists()


# --------------------------------------------------------------------------- hosts: subnets; nodes: ports

def test_host_subnets_are_unique_and_the_local_one_is_never_given(loc):
    with open_reg(loc) as reg:
        got = [reg.ensure_host(name, address="10.0.0.%d" % i)[1]["subnet"] for i, name in enumerate(("h1", "h2"))]
        assert got == ["172.21.1.0/24", "172.21.2.0/24"]
        assert reg.ensure_host("h1", engine_version="20.10")[1]["subnet"] == "172.21.1.0/24"   # keeps its own
        with pytest.raises(RegistryError) as err:
            reg.ensure_host("h3", subnet="172.21.2.0/24")
        assert (err.value.kind, err.value.label, err.value.field) == ("host", "h3", "subnet")
        assert "host 'h3'" in str(err.value) and "'h2'" in str(err.value)
        with pytest.raises(RegistryError, match="local engine"):
            reg.ensure_host("h3", subnet="172.21.0.0/24")
        assert reg.ensure_host("h3", subnet="172.21.9.0/24")[1]["subnet"] == "172.21.9.0/24"
        assert reg.decommission_host("h1", reason="gone") is True
        assert reg.ensure_host("h4")[1]["subnet"] == "172.21.1.0/24"    # h1's subnet is free again
        with pytest.raises(RegistryError, match="not one of"):
            reg.set_host("h2", status="bogus")
        assert reg.set_host("h2", status="connected", cert_not_after=1.5e9) is True
        assert [h["name"] for h in reg.hosts(include_decommissioned=False)] == ["h2", "h3", "h4"]
        kinds = {(e["kind"], e["action"]) for e in reg.audit_entries()}
        assert ("host", "add") in kinds and ("host", "decommission") in kinds
        assert reg.verify()["ok"] is True
        with pytest.raises(RegistryError, match="no free /24"):
            reg.ensure_host("h5", fleet_range="172.21.0.0/23")


def test_a_host_with_live_nodes_is_not_decommissioned(loc):
    with open_reg(loc) as reg:
        sub = Pool.for_subnet(reg.ensure_host("h1")[1]["subnet"])
        with reg.transaction():
            reg.ensure(dict(label="a", docker_host="h1"), sub)
        with pytest.raises(RegistryError, match="node 'a' still lives on it"):
            reg.decommission_host("h1")


def test_ports_are_unique_per_host(loc):
    with open_reg(loc) as reg:
        with reg.transaction():
            for label, host in (("a", None), ("b", None), ("c", "h1"), ("d", "h1")):
                reg.ensure(dict(label=label, docker_host=host, network_mode="host"), POOL)
            ports = [reg.allocate_port(label, 9010, 9020, step=2)[0] for label in ("a", "b", "c", "d")]
            assert reg.allocate_port("a", 9010, 9020, step=2) == (9010, False)
        assert ports == [9010, 9012, 9010, 9012]
        with reg.transaction():
            reg.destroy("a")                                        # frees its port
        with reg.transaction():
            reg.ensure(dict(label="e"), POOL)
            assert reg.allocate_port("e", 9010, 9020, step=2) == (9010, True)
            with pytest.raises(RegistryError, match="no free port"):
                reg.ensure(dict(label="f"), POOL)
                for i in range(10):
                    reg.allocate_port("f", 9010, 9012, step=2)
        assert reg.verify()["ok"] is True
