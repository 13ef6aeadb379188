"""Check mode plans on a private copy of fleet.db: it never takes the registry's write lock, so a dry run
does not queue behind (or block) a real run, and it writes nothing."""

import os
import sqlite3
import threading
import time

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry

POOL = Pool()


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "fleet.db")
    with Registry(path, actor="setup") as reg:
        with reg.transaction():
            reg.ensure(dict(label="a"), POOL)
            reg.ensure(dict(label="b"), POOL)
    return path


def snapshot(path):
    conn = sqlite3.connect(path)
    try:
        return (conn.execute("SELECT * FROM nodes ORDER BY label").fetchall(),
                conn.execute("SELECT * FROM audit ORDER BY height").fetchall())
    finally:
        conn.close()


def test_check_mode_does_not_wait_for_a_writer(db):
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")                   # a real run holds the write lock
    try:
        t0 = time.time()
        with Registry(db, actor="plan", check_mode=True, busy_timeout=3.0) as reg:
            with reg.transaction():
                dummy, after, changed = reg.ensure(dict(label="c"), POOL)
                reg.ensure_identity("c", None, lambda: os.urandom(32))
                reg.destroy("a")
                reg.set_fields("b", status="online")
            assert changed and after["ip"] == "172.21.0.12"
            assert reg.verify()["ok"] is True
        assert time.time() - t0 < 1.5
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_check_mode_does_not_block_a_real_run(db):
    before = snapshot(db)
    with Registry(db, actor="plan", check_mode=True) as plan:
        with plan.transaction():
            plan.ensure(dict(label="c"), POOL)
            done = {}

            def real_run():
                with Registry(db, actor="real", busy_timeout=3.0) as reg:
                    with reg.transaction():
                        done["ip"] = reg.ensure(dict(label="d"), POOL)[1]["ip"]
            t = threading.Thread(target=real_run)
            t0 = time.time()
            t.start()
            t.join(10)
            assert done == {"ip": "172.21.0.12"} and time.time() - t0 < 1.5
    nodes, audit = snapshot(db)
    assert [n[0] for n in nodes] == ["a", "b", "d"] and len(audit) == len(before[1]) + 1


def test_a_plan_sees_its_own_earlier_steps_and_writes_nothing(db):
    before = snapshot(db)
    with Registry(db, actor="plan", check_mode=True) as reg:
        with reg.transaction():
            ips = [reg.ensure(dict(label=l), POOL)[1]["ip"] for l in ("c", "d")]
        with reg.transaction():
            ips.append(reg.ensure(dict(label="e"), POOL)[1]["ip"])
    assert ips == ["172.21.0.12", "172.21.0.13", "172.21.0.14"]
    assert snapshot(db) == before
    assert not os.path.exists(os.path.join(os.path.dirname(db), "fleet.key"))
