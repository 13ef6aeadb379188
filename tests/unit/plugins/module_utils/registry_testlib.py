"""Helpers shared by the registry's unit tests (imported by them; not a test module)."""

import ipaddress
import os

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry, is_dsn

POOL = Pool()  # 172.21.0.0/24, gateway .1, pool .10 - .249
COLLECTIONS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))),
    "collections")


def open_reg(loc, **kw):
    kw.setdefault("actor", "pytest")
    return Registry(loc, **kw)


def alloc(reg, label, pool=POOL, **spec):
    """Reserve ``label`` in one transaction; returns the record after it."""
    with reg.transaction():
        return reg.ensure(dict(spec, label=label), pool)[1]


def destroy(reg, *labels, reason=None):
    with reg.transaction():
        for label in labels:
            reg.destroy(label, reason=reason)


def ip_of(n):
    return str(ipaddress.IPv4Address(n))


def sql(loc, statement, *args):
    """Run one statement on the registry behind its back (``?`` placeholders, either backend): the rows as
    dicts, or the row count of a change."""
    if is_dsn(loc):
        import psycopg
        from psycopg.rows import dict_row
        with psycopg.connect(loc, autocommit=True, row_factory=dict_row) as conn:
            cur = conn.execute(statement.replace("?", "%s"), args or None)
            return cur.fetchall() if cur.description else cur.rowcount
    import sqlite3
    conn = sqlite3.connect(loc)
    conn.row_factory = sqlite3.Row
    try:
        cur = conn.execute(statement, args)
        rows = [dict(r) for r in cur.fetchall()] if cur.description else cur.rowcount
        conn.commit()
        return rows
    finally:
        conn.close()


def edit(loc, statement, *args):
    """Change the registry behind its back; the statement must touch at least one row."""
    count = sql(loc, statement, *args)
    assert count >= 1, statement
    return count


def lifecycle(reg):
    """Seven audited changes of two nodes: allocate a, b; update a; identity b; destroy b; allocate b; update a."""
    alloc(reg, "a", location="x")
    alloc(reg, "b")
    alloc(reg, "a", location="x")                 # no change, no entry
    with reg.transaction():
        reg.set_fields("a", status="online")
        reg.ensure_identity("b", os.urandom(32))
        reg.destroy("b")
    alloc(reg, "b")
    alloc(reg, "a", location="y")


def fleet(loc):
    """Three nodes: a online with a container, b with an identity, c provisioning."""
    with open_reg(loc) as reg:
        alloc(reg, "a", location="x")
        alloc(reg, "b")
        alloc(reg, "c")
        with reg.transaction():
            reg.set_fields("a", status="online", container_id="c0ffee")
            reg.ensure_identity("b", os.urandom(32))


def sqlite_steps(conn, fn):
    """(SQLite VM steps taken, result) of ``fn()`` on ``conn``: a cost measure that ignores the machine's load."""
    count = [0]

    def tick():
        count[0] += 1
        return 0
    conn.set_progress_handler(tick, 10)
    try:
        result = fn()
    finally:
        conn.set_progress_handler(None, 0)
    return count[0], result


# --------------------------------------------------------------------------- a schema-4 registry, as 0.x left it

V4_DDL = """
CREATE TABLE nodes (label TEXT PRIMARY KEY, server_id TEXT NOT NULL, provider TEXT NOT NULL DEFAULT 'docker',
    location TEXT, ip TEXT, ip_int INTEGER UNIQUE, node_id TEXT, container_id TEXT, nonce TEXT,
    status TEXT NOT NULL DEFAULT 'provisioning'
        CHECK (status IN ('provisioning', 'running', 'online', 'failed', 'destroyed')),
    reason TEXT, secrets BLOB, created_at REAL NOT NULL, updated_at REAL NOT NULL, last_seen REAL,
    report_received_at REAL, CHECK (ip_int IS NULL OR status != 'destroyed'));
CREATE INDEX nodes_status ON nodes (status);
CREATE TABLE held_runs (run_start INTEGER PRIMARY KEY, run_end INTEGER NOT NULL, CHECK (run_end >= run_start));
CREATE TABLE audit (height INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    label TEXT, before TEXT, after TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE);
CREATE INDEX audit_label ON audit (label, height);
CREATE TABLE registry_meta (key TEXT PRIMARY KEY, value TEXT);
PRAGMA user_version = 4
"""


def make_v4(path, pool, labels, seeds=None, key=None, destroyed=()):
    """A schema-4 fleet.db: ``labels`` allocated from ``pool`` in order (``destroyed`` ones destroyed after), each
    change with an unkeyed (public SHA-256) audit entry; ``seeds`` {label: seed} encrypted with ``key`` as schema 4
    did (not bound to the row)."""
    import base64
    import json
    import sqlite3
    import time

    from cryptography.fernet import Fernet

    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import entry_hash
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import V4_COLUMNS, runs_of

    def view(row):
        v = {c: row[c] for c in V4_COLUMNS if c != "secrets"}
        v["secrets_sha256"] = __import__("hashlib").sha256(row["secrets"]).hexdigest() if row["secrets"] else None
        return v

    conn = sqlite3.connect(path)
    conn.executescript(V4_DDL)
    entries, prev, height = [], "0" * 64, 0
    rows = {}

    def append(action, label, before, after):
        nonlocal prev, height
        height += 1
        ts = time.time()
        b, a = (view(before) if before else None), (view(after) if after else None)
        digest = entry_hash(height, ts, "v4", action, label, b, a, prev)
        entries.append((height, ts, "v4", action, label, json.dumps(b, sort_keys=True, separators=(",", ":"))
                        if b else None, json.dumps(a, sort_keys=True, separators=(",", ":")) if a else None,
                        prev, digest))
        prev = digest

    now = time.time()
    for i, label in enumerate(labels):
        ip_int = int(pool.start) + i
        row = dict.fromkeys(V4_COLUMNS)
        row.update(label=label, server_id="fenrir-" + label, provider="docker", ip=ip_of(ip_int), ip_int=ip_int,
                   status="provisioning", created_at=now, updated_at=now)
        append("allocate", label, None, row)
        if seeds and label in seeds:
            before = dict(row)
            row["secrets"] = Fernet(key).encrypt(json.dumps(
                {"seed": base64.b64encode(seeds[label]).decode()}, sort_keys=True,
                separators=(",", ":")).encode())
            append("identity", label, before, row)
        rows[label] = row
    for label in destroyed:
        before = dict(rows[label])
        rows[label].update(status="destroyed", ip_int=None)
        append("destroy", label, before, rows[label])
    conn.executemany("INSERT INTO nodes (%s) VALUES (%s)" % (", ".join(V4_COLUMNS), ", ".join("?" * len(V4_COLUMNS))),
                     [tuple(r[c] for c in V4_COLUMNS) for r in rows.values()])
    conn.executemany("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", entries)
    held = sorted(r["ip_int"] for r in rows.values() if r["ip_int"] is not None)
    conn.executemany("INSERT INTO held_runs VALUES (?, ?)", list(runs_of(held)))
    conn.commit()
    conn.close()
    return len(entries)
