"""Make the collection importable as ``ansible_collections.fenrir.fleet``.

``collections/ansible_collections/fenrir/fleet`` is a link back to the repository root (made by
scripts/link-collection, not tracked), so putting the ``collections`` directory of this checkout on sys.path is
enough; the path is derived from this file.
"""

import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_DIR = os.path.join(REPO_ROOT, "collections")
if not os.path.exists(os.path.join(COLLECTIONS_DIR, "ansible_collections", "fenrir", "fleet")):
    subprocess.run([os.path.join(REPO_ROOT, "scripts", "link-collection")], check=True)

if COLLECTIONS_DIR not in sys.path:
    sys.path.insert(0, COLLECTIONS_DIR)


import itertools  # noqa: E402
import sqlite3  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def audit_registry(tmp_path):
    """A registry of two nodes (alpha provisioning, beta online): three audit entries."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry
    db = tmp_path / "fleet.db"
    with Registry(str(db), actor="audit-test") as reg:
        with reg.transaction():
            for label in ("alpha", "beta"):
                reg.ensure(dict(label=label, location="eu-north"), Pool())
            reg.set_fields("beta", status="online")
    return db


@pytest.fixture
def sql_edit():
    """Change a registry file behind the registry's back: sql_edit(path, sql, *args)."""
    def edit(db, sql, *args):
        conn = sqlite3.connect(db)
        conn.execute(sql, args)
        conn.commit()
        conn.close()
    return edit


@pytest.fixture
def registry_rows():
    """registry_rows(path): a SQLite registry's node rows by label, read outside the registry (read-write, so
    closing leaves no -wal/-shm behind)."""
    def rows(db):
        conn = sqlite3.connect(str(db))
        conn.row_factory = sqlite3.Row
        try:
            return {r["label"]: dict(r) for r in conn.execute("SELECT * FROM nodes")}
        finally:
            conn.close()
    return rows


# --------------------------------------------------------------------------- PostgreSQL (the private cluster)

@pytest.fixture(scope="session")
def pg_cluster():
    """The DSN of the private PostgreSQL cluster of scripts/ensure-postgres, started when needed (unless
    FENRIR_TEST_PG_DSN names one already). Its password is in the passfile the script names: PGPASSFILE goes into
    this process's environment, so every ansible-playbook run gets it from there, never from a command line.
    FENRIR_SKIP_POSTGRES=1 skips every test that needs it."""
    if os.environ.get("FENRIR_SKIP_POSTGRES"):
        pytest.skip("FENRIR_SKIP_POSTGRES is set")
    if not os.environ.get("FENRIR_TEST_PG_DSN"):
        out = subprocess.run([os.path.join(REPO_ROOT, "scripts", "ensure-postgres")], capture_output=True, text=True,
                             timeout=900, check=False)
        if out.returncode != 0:
            pytest.fail("scripts/ensure-postgres failed: %s" % out.stderr[-2000:])
        for line in out.stdout.splitlines():
            if line.startswith("export ") and "=" in line:
                name, value = line[len("export "):].split("=", 1)
                os.environ[name] = value
    return os.environ["FENRIR_TEST_PG_DSN"]


def _drop_leftover_databases(conn):
    """Databases of test runs whose process is gone (killed before it could drop its own)."""
    for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'fenrir\\_%test\\_%'").fetchall():
        try:
            pid = int(name.split("_")[2])
        except (IndexError, ValueError):
            continue
        if not os.path.exists("/proc/%d" % pid):
            conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


@pytest.fixture(scope="session")
def pg_database(pg_cluster):
    """A database of this test run on the private cluster, dropped afterwards (and those of killed runs): its DSN
    (no password in it). Every test that needs PostgreSQL takes a schema of its own in it."""
    import psycopg
    name = "fenrir_test_%d_%s" % (os.getpid(), uuid.uuid4().hex[:8])
    with psycopg.connect(pg_cluster, autocommit=True) as conn:
        _drop_leftover_databases(conn)
        conn.execute("CREATE DATABASE %s" % name)
        # Commits of a test run need not survive a power cut: the WAL is flushed in the background.
        conn.execute("ALTER DATABASE %s SET synchronous_commit = off" % name)
    yield "%s/%s" % (pg_cluster.rsplit("/", 1)[0], name)
    with psycopg.connect(pg_cluster, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


_schemas = itertools.count(1)


@pytest.fixture
def pg_location(pg_database):
    """A fresh PostgreSQL registry location: a schema of its own in the run's database."""
    import psycopg
    schema = "t%d_%s" % (next(_schemas), uuid.uuid4().hex[:6])
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA %s" % schema)
    return "%s?options=-csearch_path%%3D%s" % (pg_database, schema)
