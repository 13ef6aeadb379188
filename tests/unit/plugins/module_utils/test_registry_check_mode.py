"""Check mode plans on a private copy of the registry (the file, or a snapshot of PostgreSQL): it never takes the
registry's write lock, so a dry run does not queue behind (or block) a real run, and it writes nothing."""

import os
import threading
import time

import pytest

from registry_testlib import POOL, alloc, open_reg, sql


@pytest.fixture
def two(loc):
    with open_reg(loc, actor="setup") as reg:
        alloc(reg, "a")
        alloc(reg, "b")
    return loc


def snapshot(loc):
    return sql(loc, "SELECT * FROM nodes ORDER BY label"), sql(loc, "SELECT * FROM audit ORDER BY height")


def test_check_mode_does_not_wait_for_a_writer(two):
    writer = open_reg(two, actor="real")
    writer._begin()                                   # a real run holds the write lock
    try:
        t0 = time.time()
        with open_reg(two, actor="plan", check_mode=True, busy_timeout=3.0) as reg:
            with reg.transaction():
                dummy, after, changed = reg.ensure(dict(label="c"), POOL)
                reg.ensure_identity("c", None, lambda: os.urandom(32))
                reg.destroy("a")
                reg.set_fields("b", status="online")
            assert changed and after["ip"] == "172.21.0.12"
            assert reg.verify()["ok"] is True
        assert time.time() - t0 < 1.5
    finally:
        writer._end(False)
        writer.close()


def test_check_mode_does_not_block_a_real_run(two):
    before = snapshot(two)
    with open_reg(two, actor="plan", check_mode=True) as plan:
        with plan.transaction():
            plan.ensure(dict(label="c"), POOL)
            done = {}

            def real_run():
                with open_reg(two, actor="real", busy_timeout=3.0) as reg:
                    done["ip"] = alloc(reg, "d")["ip"]
            t = threading.Thread(target=real_run)
            t0 = time.time()
            t.start()
            t.join(10)
            assert done == {"ip": "172.21.0.12"} and time.time() - t0 < 1.5
    nodes, audit = snapshot(two)
    assert [n["label"] for n in nodes] == ["a", "b", "d"] and len(audit) == len(before[1]) + 1


def test_a_plan_sees_its_own_earlier_steps_and_writes_nothing(two, backend):
    before = snapshot(two)
    with open_reg(two, actor="plan", check_mode=True) as reg:
        with reg.transaction():
            ips = [reg.ensure(dict(label=label), POOL)[1]["ip"] for label in ("c", "d")]
        with reg.transaction():
            ips.append(reg.ensure(dict(label="e"), POOL)[1]["ip"])
        reg.ensure_host("h1")
        reg.put_tenant("t1", spec={"image": "x"})
        assert reg.verify()["ok"] is True
    assert ips == ["172.21.0.12", "172.21.0.13", "172.21.0.14"]
    assert snapshot(two) == before
    assert sql(two, "SELECT count(*) AS n FROM hosts") == [{"n": 0}]


def test_reading_and_verifying_in_check_mode_copies_nothing_from_postgresql(pg_loc):
    with open_reg(pg_loc) as reg:
        alloc(reg, "a")
    with open_reg(pg_loc, check_mode=True) as reg:
        assert reg.verify()["ok"] is True and reg.get("a")["ip"] == "172.21.0.10"
        assert reg.backend == "postgresql" and reg._copy_pending      # read on the server, in a read-only snapshot
        assert alloc(reg, "b")["ip"] == "172.21.0.11"                 # the first planned write copies
        assert not reg._copy_pending and reg.verify()["ok"] is True
    assert [r["label"] for r in sql(pg_loc, "SELECT label FROM nodes")] == ["a"]
