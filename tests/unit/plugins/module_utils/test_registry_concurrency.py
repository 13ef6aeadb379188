"""Many OS processes allocating against one registry at the same moment -- a SQLite file, and a real PostgreSQL
server (the private cluster of scripts/ensure-postgres).

Real processes (subprocess, each its own Python), released together by a start file: the store's
locking between processes is what is under test, not the GIL.  Some processes allocate distinct
labels, some race for the SAME labels; some open the registry once, some once per allocation (as
one Ansible task each).  The registry does not exist when they start (a fresh file; an empty database
schema), so they also race to create and migrate it.
"""

import ipaddress
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    SCHEMA_VERSION, Pool, Registry, registry_exists)

from registry_testlib import COLLECTIONS_DIR, sql
POOL_ARGS = ("10.50.0.0/16", "10.50.0.1", "10.50.0.10", "10.50.255.200")
DISTINCT_WORKERS = 6
SHARED_WORKERS = 3
PER_WORKER = 40

# argv: db, job json file, ready file, go file, out file
WORKER = r"""
import json, os, sys, time
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry
db, job_file, ready, go, out = sys.argv[1:6]
with open(job_file) as fh:
    job = json.load(fh)
pool = Pool(*job["pool"])
open(ready, "w").close()
deadline = time.time() + 60
while not os.path.exists(go):
    if time.time() > deadline:
        sys.exit("no start signal")
    time.sleep(0.001)
got = {}
reg = None
started = time.time()
for label in job["labels"]:
    if reg is None:
        reg = Registry(db, actor="worker-%d" % os.getpid())
    with reg.transaction():
        _, after, _ = reg.ensure(dict(label=label, location="loc-%s" % label), pool)
        seed = None
        if job["identity"]:
            seed, _ = reg.ensure_identity(label, None, lambda: os.urandom(32))
    got[label] = [after["ip"], seed.hex() if seed else None]
    if job["reopen"]:
        reg.close()
        reg = None
if reg is not None:
    reg.close()
with open(out, "w") as fh:
    json.dump(dict(got=got, span=[started, time.time()]), fh)
"""


def _run_all(db, tmp_path, jobs, fresh):
    """jobs: list of (labels, reopen, with_identity).  Starts them all, releases them at once."""
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_DIR)
    go = str(tmp_path / "go")
    procs, outs, readies = [], [], []
    for i, (labels, reopen, with_identity) in enumerate(jobs):
        job_file = tmp_path / ("job-%d.json" % i)
        job_file.write_text(json.dumps(dict(labels=labels, reopen=reopen, identity=with_identity, pool=POOL_ARGS)))
        ready, out = str(tmp_path / ("ready-%d" % i)), str(tmp_path / ("out-%d.json" % i))
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER, db, str(job_file), ready, go, out], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        outs.append(out)
        readies.append(ready)
    deadline = time.time() + 60
    while not all(os.path.exists(r) for r in readies):
        assert time.time() < deadline and all(p.poll() is None for p in procs), "workers did not get ready"
        time.sleep(0.005)
    assert registry_exists(db) != fresh          # nobody has touched the registry before the start
    open(go, "w").close()
    errors = []
    for p in procs:
        try:
            dummy, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            dummy, err = p.communicate()
        if p.returncode != 0:
            errors.append(err.decode(errors="replace"))
    assert errors == [], "\n".join(errors)
    results, spans = [], []
    for out in outs:
        with open(out) as fh:
            data = json.load(fh)
        results.append(data["got"])
        spans.append(data["span"])
    # the processes really ran at the same time: most of them started before another had finished
    overlapping = sum(1 for i, (start, dummy) in enumerate(spans)
                      if any(o_start <= start < o_end for j, (o_start, o_end) in enumerate(spans) if j != i))
    assert overlapping >= len(jobs) // 2, spans
    return results


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh-db", "existing-db"])
def test_concurrent_processes_never_share_an_address(loc, tmp_path, fresh):
    db = loc
    if not fresh:
        Registry(db, actor="setup").close()
    distinct = [["w%d-n%d" % (w, j) for j in range(PER_WORKER)] for w in range(DISTINCT_WORKERS)]
    shared = ["shared-%d" % j for j in range(PER_WORKER)]
    jobs = [(labels, w % 2 == 0, False) for w, labels in enumerate(distinct)]
    # the same labels, in different orders, by several processes; with identities
    jobs += [(shared if s % 2 == 0 else list(reversed(shared)), s == 1, True) for s in range(SHARED_WORKERS)]
    results = _run_all(db, tmp_path, jobs, fresh)

    rows = [(r["label"], r["ip"], r["ip_int"], r["status"])
            for r in sql(db, "SELECT label, ip, ip_int, status FROM nodes")]
    expected_labels = {l for labels in distinct for l in labels} | set(shared)
    # no lost rows, every label exactly one row
    assert len(rows) == len(expected_labels) == DISTINCT_WORKERS * PER_WORKER + PER_WORKER
    assert sorted(r[0] for r in rows) == sorted(expected_labels)
    # all addresses distinct, held, inside the pool, and consistent text/int
    ip_ints = [r[2] for r in rows]
    assert None not in ip_ints and len(set(ip_ints)) == len(ip_ints)
    pool = Pool(*POOL_ARGS)
    for label, ip, ip_int, status in rows:
        assert int(ipaddress.IPv4Address(ip)) == ip_int and pool.start <= ipaddress.IPv4Address(ip) <= pool.end
        assert status == "provisioning"
    # the allocator packs from the start of the pool: exactly the first N addresses are used
    first = int(pool.start)
    assert sorted(ip_ints) == list(range(first, first + len(rows)))
    by_label = {r[0]: r[1] for r in rows}
    # what each process was told is what the registry holds
    for res in results:
        for label, (ip, _seed) in res.items():
            assert by_label[label] == ip, label
    # same-label runs converged on one address and one identity
    shared_results = results[DISTINCT_WORKERS:]
    with Registry(db, actor="check") as reg:
        for label in shared:
            assert len({tuple(r[label]) for r in shared_results}) == 1, label
            assert reg.get_seed(label).hex() == shared_results[0][label][1]
        verdict = reg.verify()
        entries = reg.audit_entries()
    assert verdict["ok"] is True, verdict
    # one allocate entry per label, one identity entry per shared label, nothing else
    assert sorted(e["action"] for e in entries) == sorted(["allocate"] * len(rows) + ["identity"] * len(shared))
    assert [e["height"] for e in entries] == list(range(1, len(entries) + 1))
    # every distinct-label process wrote its own entries (a shared-label one may have found all done)
    assert len({e["actor"] for e in entries}) > DISTINCT_WORKERS


def test_first_open_waits_for_a_writer_instead_of_failing(tmp_path):
    """Adopting an original-skill fleet.db (rollback journal) while another connection is writing it:
    the switch to WAL and the migration wait for the writer and keep its change."""
    import threading
    db = str(tmp_path / "fleet.db")
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE fleet_nodes (label TEXT PRIMARY KEY, ip, status TEXT DEFAULT 'provisioning')")
    other.execute("INSERT INTO fleet_nodes (label, ip) VALUES ('old', '10.50.0.10')")
    other.execute("BEGIN IMMEDIATE")                           # another writer holds the file ...
    other.execute("UPDATE fleet_nodes SET status = 'online'")   # ... for half a second
    timer = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        t0 = time.time()
        with Registry(db, actor="late") as reg:
            waited = time.time() - t0
            assert reg.schema_version == SCHEMA_VERSION and reg.get("old")["ip"] == "10.50.0.10"
            assert reg.get("old")["status"] == "online"
            assert reg.conn.execute("PRAGMA journal_mode").fetchone()["journal_mode"] == "wal"
        assert waited >= 0.3
    finally:
        timer.join()
        other.close()


def test_fresh_file_being_created_by_another_process_is_waited_for(tmp_path):
    """The race of processes opening a registry that does not exist yet, made deterministic: one has
    created the empty file and holds its write lock (it is about to switch it to WAL and migrate).
    SQLite refuses the second one's switch to WAL at once, without its busy handler -- the registry
    must wait for the first one, not fail with 'database is locked'."""
    import threading
    db = str(tmp_path / "fleet.db")
    first = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    first.execute("BEGIN IMMEDIATE")
    assert os.path.getsize(db) == 0
    timer = threading.Timer(0.5, lambda: first.execute("ROLLBACK"))
    timer.start()
    try:
        t0 = time.time()
        with Registry(db, actor="second") as reg:
            assert reg.schema_version == SCHEMA_VERSION
            assert reg.conn.execute("PRAGMA journal_mode").fetchone()["journal_mode"] == "wal"
            with reg.transaction():
                assert reg.ensure(dict(label="a"), Pool(*POOL_ARGS))[1]["ip"] == "10.50.0.10"
        assert time.time() - t0 >= 0.3
    finally:
        timer.join()
        first.close()
