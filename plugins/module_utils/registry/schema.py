# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry's tables (schema 5), written once for both backends, and the structural steps that bring an
older registry there.  (What a migration records -- adoption, the re-anchoring of an unkeyed audit chain,
the re-sealing of secrets -- is done by the registry itself, see ``core.Registry._upgrade``.)

Column types are ``{INT}``, ``{REAL}``, ``{BLOB}``: INTEGER/REAL/BLOB on SQLite, BIGINT/DOUBLE PRECISION/BYTEA
on PostgreSQL.  The schema version lives in ``PRAGMA user_version`` (SQLite) or ``registry_meta``
(``schema_version``, PostgreSQL).
"""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    label TEXT PRIMARY KEY,
    server_id TEXT NOT NULL,
    provider TEXT NOT NULL DEFAULT 'docker',
    location TEXT,
    ip TEXT,
    ip_int {INT} UNIQUE,
    node_id TEXT,
    container_id TEXT,
    nonce TEXT,
    status TEXT NOT NULL DEFAULT 'provisioning'
        CHECK (status IN ('provisioning', 'running', 'online', 'failed', 'destroyed')),
    reason TEXT,
    secrets {BLOB},
    created_at {REAL} NOT NULL,
    updated_at {REAL} NOT NULL,
    last_seen {REAL},
    report_received_at {REAL},
    docker_host TEXT,
    network_mode TEXT NOT NULL DEFAULT 'bridge' CHECK (network_mode IN ('bridge', 'host')),
    port {INT} CHECK (port IS NULL OR (port >= 1 AND port <= 65535)),
    image TEXT,
    image_id TEXT,
    previous_image TEXT,
    previous_image_id TEXT,
    CHECK (ip_int IS NULL OR status != 'destroyed')
);
CREATE INDEX IF NOT EXISTS nodes_status ON nodes (status);
CREATE UNIQUE INDEX IF NOT EXISTS nodes_host_port ON nodes ((COALESCE(docker_host, '')), port)
    WHERE port IS NOT NULL;
CREATE TABLE IF NOT EXISTS held_runs (
    run_start {INT} PRIMARY KEY,
    run_end {INT} NOT NULL,
    CHECK (run_end >= run_start)
);
CREATE TABLE IF NOT EXISTS audit (
    height {INT} PRIMARY KEY,
    ts {REAL} NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    label TEXT,
    before TEXT,
    after TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL DEFAULT 'node'
);
CREATE INDEX IF NOT EXISTS audit_kind_label ON audit (kind, label, height);
CREATE TABLE IF NOT EXISTS registry_meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY,
    address TEXT,
    endpoint TEXT,
    subnet TEXT,
    subnet_int {INT} UNIQUE,
    cert_fingerprint TEXT,
    cert_not_after {REAL},
    engine_version TEXT,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'connected', 'disconnected', 'decommissioned')),
    reason TEXT,
    max_nodes {INT},
    memory_bytes {INT},
    created_at {REAL} NOT NULL,
    updated_at {REAL} NOT NULL
);
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id TEXT PRIMARY KEY,
    prefix TEXT,
    docker_host TEXT,
    container_name TEXT,
    container_id TEXT,
    image TEXT,
    image_id TEXT,
    spec_digest TEXT,
    spec {BLOB},
    status TEXT NOT NULL DEFAULT 'provisioning'
        CHECK (status IN ('provisioning', 'running', 'starting', 'stopped', 'failed', 'destroyed')),
    reason TEXT,
    exit_code {INT},
    created_at {REAL} NOT NULL,
    updated_at {REAL} NOT NULL
);
CREATE INDEX IF NOT EXISTS tenants_status ON tenants (status);
CREATE TABLE IF NOT EXISTS registry_secrets (
    name TEXT PRIMARY KEY,
    secret {BLOB},
    created_at {REAL} NOT NULL,
    updated_at {REAL} NOT NULL
)
"""
# held_runs: see allocation.py.  audit_kind_label finds the newest entry of a record in one probe (the check
# before every write).  nodes_host_port: a port is held once per Docker host (NULL host = the local engine).

# Tables every registry of this schema has, in the order a copy fills them.
TABLES = ("registry_meta", "nodes", "held_runs", "hosts", "tenants", "registry_secrets", "audit")

# Schema 4 -> 5: new node columns (at the end, as in SCHEMA) and the audit entry's kind.
NODE_COLUMNS_V5 = (
    ("docker_host", "TEXT"),
    ("network_mode", "TEXT NOT NULL DEFAULT 'bridge' CHECK (network_mode IN ('bridge', 'host'))"),
    ("port", "{INT} CHECK (port IS NULL OR (port >= 1 AND port <= 65535))"),
    ("image", "TEXT"),
    ("image_id", "TEXT"),
    ("previous_image", "TEXT"),
    ("previous_image_id", "TEXT"),
)


def upgrade_structure(store):
    """Bring the tables of a schema 2-4 registry to schema 5 (columns added, index renamed), then create
    whatever is missing.  Returns the tables there were before."""
    tables = store.tables()
    if "nodes" in tables:
        have = set(store.columns("nodes"))
        for name, decl in NODE_COLUMNS_V5:
            if name not in have:
                store.execute(("ALTER TABLE nodes ADD COLUMN %s %s" % (name, decl)).format(**store.types))
    if "audit" in tables and "kind" not in store.columns("audit"):
        store.execute("ALTER TABLE audit ADD COLUMN kind TEXT NOT NULL DEFAULT 'node'")
    store.execute("DROP INDEX IF EXISTS audit_label")
    store.ddl(SCHEMA)
    if "pool_cursor" in tables:
        store.execute("DROP TABLE pool_cursor")
    return tables
