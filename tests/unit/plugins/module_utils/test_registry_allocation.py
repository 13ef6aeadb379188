"""Address allocation: which address a node gets (unchanged semantics) and what it costs (not growing with
the registry, also for the first allocation from a pool and right after a freed low address is reused)."""

import ipaddress
import random
import sqlite3

import pytest

from registry_testlib import sqlite_steps

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    SCHEMA_VERSION, Pool, Registry, RegistryError,
)

POOL = Pool("10.9.0.0/24", "10.9.0.1", "10.9.0.10", "10.9.0.40")


def ip(n):
    return str(ipaddress.IPv4Address(n))


def lowest_free(conn, pool):
    held = {r[0] for r in conn.execute("SELECT ip_int FROM nodes WHERE ip_int IS NOT NULL")}
    return next((a for a in range(int(pool.start), int(pool.end) + 1) if a not in held), None)


def test_allocation_is_the_documented_choice_under_random_operations(tmp_path):
    """Pinned address, else the node's previous address when in the pool and free, else the lowest free
    address of the pool -- checked against a brute-force reference after every step."""
    rng = random.Random(7)
    other = Pool("10.9.0.0/24", "10.9.0.1", "10.9.0.20", "10.9.0.60")   # an overlapping second pool
    labels = ["n%d" % i for i in range(45)]
    with Registry(str(tmp_path / "fleet.db"), actor="fuzz") as reg:
        for step in range(600):
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
                    free = lowest_free(reg.conn, pool)
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


def _downgrade_to_schema_3(path):
    """A registry as the schema-3 collection left it: a pool_cursor table, no held_runs."""
    conn = sqlite3.connect(path)
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
    with Registry(path, actor="v3") as reg:
        with reg.transaction():
            for label in ("a", "b", "c", "d", "e"):
                reg.ensure(dict(label=label), POOL)
            reg.ensure(dict(label="p", ip="10.9.0.200"), POOL)
            reg.destroy("b")
    _downgrade_to_schema_3(path)
    with Registry(path, actor="v4") as reg:
        assert reg.schema_version == SCHEMA_VERSION == 4
        tables = reg._tables()
        assert "pool_cursor" not in tables and "held_runs" in tables
        runs = reg.conn.execute("SELECT run_start, run_end FROM held_runs ORDER BY run_start").fetchall()
        pinned = int(ipaddress.IPv4Address("10.9.0.200"))
        start = int(POOL.start)
        assert [tuple(r) for r in runs] == [(start, start), (start + 2, start + 4), (pinned, pinned)]
        assert reg.verify()["ok"] is True
        with reg.transaction():
            assert reg.ensure(dict(label="f"), POOL)[1]["ip"] == "10.9.0.11"
            assert reg.ensure(dict(label="g"), POOL)[1]["ip"] == "10.9.0.15"
        assert reg.verify()["ok"] is True


def test_check_mode_plans_the_migration_on_a_copy(tmp_path):
    path = str(tmp_path / "fleet.db")
    with Registry(path, actor="v3") as reg:
        with reg.transaction():
            reg.ensure(dict(label="a"), POOL)
    _downgrade_to_schema_3(path)
    with Registry(path, actor="plan", check_mode=True) as reg:
        assert reg.schema_version == 4
        with reg.transaction():
            assert reg.ensure(dict(label="b"), POOL)[1]["ip"] == "10.9.0.11"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    conn.close()
