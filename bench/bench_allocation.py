"""Cost of ONE address allocation in the fleet registry, as the registry grows.

One allocation = Registry.ensure() of a new label inside one BEGIN IMMEDIATE transaction (the
address search, the check of the record against its audit trail, the row insert, the index of
held addresses and the audit entry), committed.  Measured on a /16 pool holding 100 and 50,000
existing records; the existing records fill the pool from its start, so the first free address
lies behind all of them (the worst case for a "lowest free address" search).  Three cases:

  steady     a new label, one after another (the common case)
  new pool   the first allocation from a pool never allocated from before (as after adoption,
             migration or a changed pool_end: schema 3 walked every held address here)
  reuse      a low address is freed (destroy) and taken again by the next allocation; then
  after      the allocation right after that reuse (schema 3 walked every held address here)

Each prints p50 and max (and p90 for steady).  Also: opening the registry in check mode (a private
copy of the file).

PostgreSQL (the private cluster of scripts/ensure-postgres, or FENRIR_BENCH_PG_DSN; a database of the
bench's own, dropped afterwards): the same steady allocation at 100 and 50,000 records, and the ratio.

Concurrency: 8 OS processes x 50 allocations each, released together, against a fresh SQLite file and
against PostgreSQL: wall time of the whole, side by side (every address distinct and the chain are checked).
``--procs-only`` runs only this (``make bench-registry`` runs everything here, ``make bench`` after the fleet
benchmark); the PostgreSQL server is the one scripts/ensure-postgres starts, when none is given.

Baseline, same process, same 50,000-row file: the naive allocator (what the original skill did,
plus the reservation it lacked): SELECT every address into Python, pick the first free one,
INSERT the row, commit.  Two flavours: addresses as text walked with ipaddress (as the skill did),
and the integer column walked as ints (the fairest naive version).

The existing records are written directly (executemany) together with a valid audit entry each
and the index of held addresses, so Registry.verify() accepts the file and the registry's own
writes (destroy) work on them.  The files are thrown away afterwards.

Usage: .venv/bin/python bench/bench_allocation.py [--samples 200] [--case-samples 20]
                                                  [--naive-samples 50] [--sizes 100,50000]
                                                  [--procs 8] [--per-proc 50] [--no-postgres]
                                                  [--procs-only]
"""

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "collections"))

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (  # noqa: E402
    COLUMNS, GENESIS_HASH, SCHEMA_VERSION, Pool, Registry, audit_view,
)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.audit import anchor, keyed_hash  # noqa: E402

POOL_ARGS = ("10.50.0.0/16", "10.50.0.1", "10.50.0.10", "10.50.255.200")


def _json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fill(reg, pool, count):
    """``count`` online records from the pool's start, each with its keyed audit entry, the anchor and the held
    runs -- written in bulk through the registry's store, so Registry.verify() accepts the result."""
    start = int(pool.start)
    now = time.time()
    rows, entries = [], []
    with reg.transaction():
        key = reg._audit_key_for_write()
        last = reg.store.one("SELECT height, hash FROM audit ORDER BY height DESC LIMIT 1")
        height0, prev_hash = (last["height"], last["hash"]) if last else (0, GENESIS_HASH)
        for i in range(count):
            ip_int = start + i
            row = dict.fromkeys(COLUMNS)
            row.update(label="seed-%06d" % i, server_id="fenrir-seed-%06d" % i, provider="docker",
                       ip=str(ipaddress.IPv4Address(ip_int)), ip_int=ip_int, status="online",
                       created_at=now, updated_at=now, network_mode="bridge")
            rows.append(tuple(row[c] for c in COLUMNS))
            after = audit_view(row)
            height = height0 + i + 1
            digest = keyed_hash(key, height, now, "bench", "allocate", "node", row["label"], None, after, prev_hash)
            entries.append((height, now, "bench", "allocate", "node", row["label"], None, _json(after), prev_hash,
                            digest))
            prev_hash = digest
        reg.store.executemany("INSERT INTO nodes (%s) VALUES (%s)"
                              % (", ".join(COLUMNS), ", ".join("?" * len(COLUMNS))), rows)
        reg.store.executemany("INSERT INTO audit (height, ts, actor, action, kind, label, before, after, prev_hash,"
                              " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", entries)
        if count:
            reg.store.execute("INSERT INTO held_runs (run_start, run_end) VALUES (?, ?)", (start, start + count - 1))
            reg.store.set_meta("audit_head", anchor(key, height0 + count, prev_hash, reg._legacy()))
    if reg.backend == "postgresql":
        reg.store.execute("ANALYZE")


def make_registry(directory, count, pool, tag="ours"):
    path = os.path.join(directory, "fleet-%s-%d.db" % (tag, count))
    reg = Registry(path, actor="bench")
    fill(reg, pool, count)
    return reg


def timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def allocate(reg, label, pool):
    with reg.transaction():
        return reg.ensure(dict(label=label), pool)[1]["ip"]


def plan(loc, pool):
    """A check-mode registry that has planned one allocation (the copy is made by then on either store)."""
    reg = Registry(loc, actor="bench", check_mode=True)
    allocate(reg, "planned", pool)
    return reg


def time_ours(reg, pool, samples, tag):
    return [timed(lambda: allocate(reg, "%s-%04d" % (tag, i), pool))[0] for i in range(samples)]


def time_interleaved(regs, pool, samples, tag):
    """Steady allocations in turns on each registry of ``regs`` ({size: registry}): both sizes see the same moments
    of a busy machine (one fsync per commit dominates on SQLite and varies with the disk's load)."""
    times = {count: [] for count in regs}
    for i in range(samples):
        for count, reg in regs.items():
            times[count].append(timed(lambda: allocate(reg, "%s-%04d" % (tag, i), pool))[0])
    return times


def time_new_pools(reg, pool, samples):
    """The first allocation from each of ``samples`` pools never used before (pool_end one lower each)."""
    times = []
    for i in range(samples):
        fresh = Pool(str(pool.subnet), str(pool.gateway), str(pool.start), str(pool.end - 1 - i))
        times.append(timed(lambda: allocate(reg, "newpool-%04d" % i, fresh))[0])
    return times


def time_reuse(reg, pool, samples, count):
    """Free a low address, let the next allocation take it (reuse), time the allocation after it too."""
    reuse, after = [], []
    for i in range(samples):
        victim = "seed-%06d" % min(count - 1, 3 + 2 * i)
        with reg.transaction():
            reg.destroy(victim)
        freed = reg.get(victim)["ip"]
        took, ip = timed(lambda: allocate(reg, "reuse-%04d" % i, pool))
        assert ip == freed, (ip, freed)
        reuse.append(took)
        after.append(timed(lambda: allocate(reg, "after-%04d" % i, pool))[0])
    return reuse, after


def naive_insert(conn, label, ip_int):
    now = time.time()
    conn.execute("INSERT INTO nodes (label, server_id, ip, ip_int, status, created_at, updated_at)"
                 " VALUES (?, ?, ?, ?, 'provisioning', ?, ?)",
                 (label, "fenrir-" + label, str(ipaddress.IPv4Address(ip_int)), ip_int, now, now))


def naive_text(conn, pool):
    """As the original skill: every address as text, walk the pool with ipaddress."""
    used = {r["ip"] for r in conn.execute("SELECT ip FROM nodes WHERE status != 'destroyed' AND ip IS NOT NULL")}
    addr = pool.start
    while addr <= pool.end:
        if str(addr) not in used:
            return int(addr)
        addr += 1
    return None


def naive_int(conn, pool):
    """The fairest naive version: the integer column into a Python set, walk ints."""
    used = {r["ip_int"] for r in conn.execute("SELECT ip_int FROM nodes WHERE ip_int IS NOT NULL")}
    for candidate in range(int(pool.start), int(pool.end) + 1):
        if candidate not in used:
            return candidate
    return None


def time_naive(reg, pool, samples, tag, pick):
    conn = reg.conn
    times = []
    for i in range(samples):
        label = "%s-%04d" % (tag, i)
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        ip_int = pick(conn, pool)
        naive_insert(conn, label, ip_int)
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t0)
    return times


def fmt(seconds):
    return "%8.3f ms" % (seconds * 1000.0)


def stats(times):
    return "p50 %s  max %s" % (fmt(statistics.median(times)), fmt(max(times)))


# --------------------------------------------------------------------------- PostgreSQL and many processes

def pg_server():
    """The DSN of a PostgreSQL server to measure on: FENRIR_BENCH_PG_DSN, else the private test cluster."""
    if os.environ.get("FENRIR_BENCH_PG_DSN"):
        return os.environ["FENRIR_BENCH_PG_DSN"]
    out = subprocess.run([os.path.join(os.path.dirname(HERE), "scripts", "ensure-postgres")], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export "):].split("=", 1)
            os.environ[name] = value
    return os.environ["FENRIR_TEST_PG_DSN"]


class PgDatabase:
    """A database of the bench's own (dropped afterwards); ``schema(tag)`` gives a fresh registry location."""

    def __init__(self, server):
        import psycopg
        self.psycopg, self.server = psycopg, server
        self.name = "fenrir_bench_%d_%s" % (os.getpid(), uuid.uuid4().hex[:6])
        with psycopg.connect(server, autocommit=True) as conn:
            for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'fenrir_bench_%'").fetchall():
                pid = row[0].split("_")[2]
                if pid.isdigit() and not os.path.exists("/proc/%s" % pid):   # left by a killed run
                    conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % row[0])
            conn.execute("CREATE DATABASE %s" % self.name)
        self.dsn = "%s/%s" % (server.rsplit("/", 1)[0], self.name)

    def schema(self, tag):
        with self.psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA %s" % tag)
        return "%s?options=-csearch_path%%3D%s" % (self.dsn, tag)

    def drop(self):
        with self.psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.name)


WORKER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry
loc, go, n, tag = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
pool = Pool("10.50.0.0/16", "10.50.0.1", "10.50.0.10", "10.50.255.200")
while not os.path.exists(go):
    time.sleep(0.001)
with Registry(loc, actor=tag) as reg:
    for i in range(n):
        with reg.transaction():
            reg.ensure(dict(label="%s-%d" % (tag, i)), pool)
"""


def many_processes(loc, directory, procs, per_proc):
    """Wall time of ``procs`` processes x ``per_proc`` allocations against ``loc`` (created first, empty)."""
    Registry(loc, actor="bench").close()
    with Registry(loc, actor="bench") as reg:   # the key and the audit key exist before the start
        allocate(reg, "warm", Pool(*POOL_ARGS))
    go = os.path.join(directory, "go-%s" % uuid.uuid4().hex[:6])
    collections = os.path.join(os.path.dirname(HERE), "collections")
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, collections, loc, go, str(per_proc), "p%d" % i])
               for i in range(procs)]
    time.sleep(1.0)  # every interpreter started and waiting
    t0 = time.perf_counter()
    open(go, "w").close()
    codes = [w.wait() for w in workers]
    wall = time.perf_counter() - t0
    assert codes == [0] * procs, codes
    with Registry(loc, actor="bench") as reg:
        nodes = reg.all()
        assert len(nodes) == procs * per_proc + 1 and len({n["ip"] for n in nodes}) == len(nodes)
        assert reg.verify()["ok"]
    return wall


def bench_postgres(args, pool, small, large):
    db = PgDatabase(pg_server())
    try:
        medians = {}
        locs = {count: db.schema("size_%d" % count) for count in (small, large)}
        regs = {count: Registry(loc, actor="bench") for count, loc in locs.items()}
        for count, reg in regs.items():
            fill(reg, pool, count)
        steady = time_interleaved(regs, pool, args.samples, "ours")
        for count, loc in locs.items():
            reg, times = regs[count], steady[count]
            medians[count] = statistics.median(times)
            print("pg     %6d existing records: steady    %s  (p90 %s)"
                  % (count, stats(times), fmt(sorted(times)[int(len(times) * 0.9)])))
            reuse, after = time_reuse(reg, pool, args.case_samples, count)
            print("pg     %6d existing records: reuse     %s" % (count, stats(reuse)))
            assert reg.verify()["ok"]
            reg.close()
            t, check = timed(lambda: plan(loc, pool))
            check.close()
            print("pg     %6d existing records: check mode, open + one planned allocation (snapshot into memory) %s"
                  % (count, fmt(t)))
        print("ratio  pg %d / pg %d: %.2fx" % (large, small, medians[large] / medians[small]))
        return db.schema("procs")
    except BaseException:
        db.drop()
        raise
    finally:
        bench_postgres.db = db


def procs_side_by_side(args, pool, directory, small, large, single=True):
    """PostgreSQL's single-process figures (unless ``single`` is false), then ``procs`` processes x ``per_proc``
    allocations at once on a fresh SQLite file and on PostgreSQL, printed side by side."""
    # A PostgreSQL registry keeps no key beside it: the bench's own, in its temporary directory.
    os.environ["FENRIR_REGISTRY_KEY_FILE"] = os.path.join(directory, "pg.key")
    pg_procs = None
    if not args.no_postgres:
        pg_procs = bench_postgres(args, pool, small, large) if single else _procs_schema()
    pg_key = os.environ.pop("FENRIR_REGISTRY_KEY_FILE")
    walls = [("sqlite", many_processes(os.path.join(directory, "procs.db"), directory, args.procs, args.per_proc))]
    if pg_procs is not None:
        os.environ["FENRIR_REGISTRY_KEY_FILE"] = pg_key
        walls.append(("postgresql", many_processes(pg_procs, directory, args.procs, args.per_proc)))
    total = args.procs * args.per_proc
    print("procs  %d processes x %d allocations at once (%d in all), every address distinct, chain verified:"
          % (args.procs, args.per_proc, total))
    print("procs  %-12s %8s %14s %16s %10s" % ("backend", "wall s", "allocations/s", "wall/allocation", "vs sqlite"))
    for name, wall in walls:
        print("procs  %-12s %8.2f %14.0f %13.2f ms %9.2fx" % (name, wall, total / wall, wall / total * 1000.0,
                                                              wall / walls[0][1]))


def _procs_schema():
    db = PgDatabase(pg_server())
    bench_postgres.db = db
    return db.schema("procs")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--case-samples", type=int, default=20,
                        help="samples of the new-pool and reuse cases")
    parser.add_argument("--naive-samples", type=int, default=50,
                        help="allocations per naive baseline (each costs up to a second)")
    parser.add_argument("--sizes", default="100,50000")
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--per-proc", type=int, default=50)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--procs-only", action="store_true",
                        help="only the processes-at-once comparison of SQLite and PostgreSQL")
    args = parser.parse_args()
    small, large = (int(x) for x in args.sizes.split(","))
    pool = Pool(*POOL_ARGS)
    directory = tempfile.mkdtemp(prefix="bench-alloc-")
    try:
        if args.procs_only:
            procs_side_by_side(args, pool, directory, small, large, single=False)
            return
        print("schema %d; pool %s-%s (%d addresses); %d steady allocations, %d per other case"
              % (SCHEMA_VERSION, pool.start, pool.end, pool.size, args.samples, args.case_samples))
        medians, cases = {}, {}
        regs = {count: make_registry(directory, count, pool) for count in (small, large)}
        steady = time_interleaved(regs, pool, args.samples, "ours")
        for reg in regs.values():   # the registry's own work, without the fsync of each commit
            reg.conn.execute("PRAGMA synchronous = NORMAL")
        no_fsync = time_interleaved(regs, pool, args.samples, "nosync")
        for reg in regs.values():
            reg.conn.execute("PRAGMA synchronous = FULL")
        for count in (small, large):
            reg, times = regs[count], steady[count]
            medians[count] = statistics.median(times)
            first = reg.get("ours-0000")["ip"]
            print("ours   %6d existing records: steady    %s  (p90 %s; first new address %s)"
                  % (count, stats(times), fmt(sorted(times)[int(len(times) * 0.9)]), first))
            new_pool = time_new_pools(reg, pool, args.case_samples)
            print("ours   %6d existing records: new pool  %s" % (count, stats(new_pool)))
            reuse, after = time_reuse(reg, pool, args.case_samples, count)
            print("ours   %6d existing records: reuse     %s" % (count, stats(reuse)))
            print("ours   %6d existing records: after     %s" % (count, stats(after)))
            cases[count] = dict(new_pool=new_pool, reuse=reuse, after=after)
            verdict = reg.verify()
            assert verdict["ok"], verdict
            reg.close()
            t, check = timed(lambda: plan(reg.path, pool))
            check.close()
            print("ours   %6d existing records: check mode, open + one planned allocation (private copy) %s"
                  % (count, fmt(t)))
        print("ratio  ours %d / ours %d: %.2fx (synchronous=FULL: one fsync per commit)"
              % (large, small, medians[large] / medians[small]))
        print("ratio  ours %d / ours %d without the fsync (synchronous=NORMAL): %.2fx (p50 %s / %s)"
              % (large, small, statistics.median(no_fsync[large]) / statistics.median(no_fsync[small]),
                 fmt(statistics.median(no_fsync[large])), fmt(statistics.median(no_fsync[small]))))
        for case in ("new_pool", "reuse", "after"):
            print("ratio  ours %s %d / %d: p50 %.2fx, max %.2fx"
                  % (case, large, small, statistics.median(cases[large][case]) / statistics.median(cases[small][case]),
                     max(cases[large][case]) / max(cases[small][case])))

        naive = {}
        for name, pick in (("naive-int", naive_int), ("naive-text", naive_text)):
            reg = make_registry(directory, large, pool, tag=name)
            times = time_naive(reg, pool, args.naive_samples, name, pick)
            naive[name] = statistics.median(times)
            print("%-10s %d existing records: %s  (p90 %s; %d allocations)"
                  % (name, large, stats(times), fmt(sorted(times)[int(len(times) * 0.9)]), len(times)))
            reg.close()
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(reg.path + suffix):
                    os.unlink(reg.path + suffix)
        for name, value in naive.items():
            print("ratio  %s / ours at %d: %.2fx" % (name, large, value / medians[large]))

        procs_side_by_side(args, pool, directory, small, large)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if getattr(bench_postgres, "db", None) is not None:
            bench_postgres.db.drop()


if __name__ == "__main__":
    main()
