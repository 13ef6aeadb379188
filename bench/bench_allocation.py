#!/usr/bin/env python3
"""Cost of ONE address allocation in the fleet registry, as the registry grows.

One allocation = Registry.ensure() of a new label inside one BEGIN IMMEDIATE transaction (the
address search, the row insert and its audit entry), committed.  Measured on a /16 pool holding
100 and 50,000 existing records; the existing records fill the pool from its start, so the first
free address lies behind all of them (the worst case for a "lowest free address" search).

Baseline, same process, same 50,000-row file: the naive allocator (what the original skill did,
plus the reservation it lacked): SELECT every address into Python, pick the first free one,
INSERT the row, commit.  Two flavours: addresses as text walked with ipaddress (as the skill did),
and the integer column walked as ints (the fairest naive version).

The records are inserted directly (executemany), with no audit entries: Registry.verify() would
flag such a file -- it is a bench file, thrown away afterwards.

Usage: .venv/bin/python bench/bench_allocation.py [--samples 200] [--naive-samples 50] [--sizes 100,50000]
"""

import argparse
import ipaddress
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "collections"))

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry  # noqa: E402

POOL_ARGS = ("10.50.0.0/16", "10.50.0.1", "10.50.0.10", "10.50.255.200")


def fill(reg, pool, count):
    start = int(pool.start)
    now = time.time()
    rows = []
    for i in range(count):
        ip_int = start + i
        rows.append(("seed-%06d" % i, "fenrir-seed-%06d" % i, str(ipaddress.IPv4Address(ip_int)), ip_int,
                     "online", now, now))
    with reg.transaction():
        reg.conn.executemany(
            "INSERT INTO nodes (label, server_id, ip, ip_int, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def make_registry(directory, count, pool, tag="ours"):
    path = os.path.join(directory, "fleet-%s-%d.db" % (tag, count))
    reg = Registry(path, actor="bench")
    fill(reg, pool, count)
    return reg


def time_ours(reg, pool, samples, tag):
    times = []
    for i in range(samples):
        label = "%s-%04d" % (tag, i)
        t0 = time.perf_counter()
        with reg.transaction():
            reg.ensure(dict(label=label), pool)
        times.append(time.perf_counter() - t0)
    return times


def naive_insert(conn, label, ip_int):
    now = time.time()
    conn.execute("INSERT INTO nodes (label, server_id, ip, ip_int, status, created_at, updated_at)"
                 " VALUES (?, ?, ?, ?, 'provisioning', ?, ?)",
                 (label, "fenrir-" + label, str(ipaddress.IPv4Address(ip_int)), ip_int, now, now))


def naive_text(conn, pool):
    """As the original skill: every address as text, walk the pool with ipaddress."""
    used = {r[0] for r in conn.execute("SELECT ip FROM nodes WHERE status != 'destroyed' AND ip IS NOT NULL")}
    addr = pool.start
    while addr <= pool.end:
        if str(addr) not in used:
            return int(addr)
        addr += 1
    return None


def naive_int(conn, pool):
    """The fairest naive version: the integer column into a Python set, walk ints."""
    used = {r[0] for r in conn.execute("SELECT ip_int FROM nodes WHERE ip_int IS NOT NULL")}
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--naive-samples", type=int, default=50,
                        help="allocations per naive baseline (each costs up to a second)")
    parser.add_argument("--sizes", default="100,50000")
    args = parser.parse_args()
    small, large = (int(x) for x in args.sizes.split(","))
    pool = Pool(*POOL_ARGS)
    directory = tempfile.mkdtemp(prefix="bench-alloc-")
    try:
        print("pool %s-%s (%d addresses), %d allocations per measurement, median reported"
              % (pool.start, pool.end, pool.size, args.samples))
        medians = {}
        for count in (small, large):
            reg = make_registry(directory, count, pool)
            times = time_ours(reg, pool, args.samples, "ours")
            medians[count] = statistics.median(times)
            first = reg.get("ours-0000")["ip"]
            print("ours   %6d existing records: median %s  (p90 %s; first new address %s)"
                  % (count, fmt(medians[count]), fmt(sorted(times)[int(len(times) * 0.9)]), first))
            reg.close()
        print("ratio  ours %d / ours %d: %.2fx" % (large, small, medians[large] / medians[small]))

        naive = {}
        for name, pick in (("naive-int", naive_int), ("naive-text", naive_text)):
            reg = make_registry(directory, large, pool, tag=name)
            times = time_naive(reg, pool, args.naive_samples, name, pick)
            naive[name] = statistics.median(times)
            print("%-10s %d existing records: median %s  (p90 %s; %d allocations)"
                  % (name, large, fmt(naive[name]), fmt(sorted(times)[int(len(times) * 0.9)]), len(times)))
            reg.close()
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(reg.path + suffix):
                    os.unlink(reg.path + suffix)
        for name, value in naive.items():
            print("ratio  %s / ours at %d: %.2fx" % (name, large, value / medians[large]))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
