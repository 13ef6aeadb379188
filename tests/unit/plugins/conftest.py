"""Fixtures of the plugin unit tests that need a real PostgreSQL server (registry locations on it).

``pg_dsn`` is a database of this test run on the private cluster of ``scripts/ensure-postgres`` (started when
``FENRIR_TEST_PG_DSN`` is not set; ``FENRIR_SKIP_POSTGRES=1`` skips every test that needs it), dropped afterwards;
``pg_loc`` a schema of its own in it for one test, its key file given through ``FENRIR_REGISTRY_KEY_FILE``.
"""

import itertools
import os
import subprocess
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
_schemas = itertools.count(1)


def _server_dsn():
    dsn = os.environ.get("FENRIR_TEST_PG_DSN")
    if dsn:
        return dsn
    out = subprocess.run([os.path.join(REPO, "scripts", "ensure-postgres")], check=True, capture_output=True,
                         text=True, timeout=900).stdout
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            name, value = line[len("export "):].split("=", 1)
            os.environ[name] = value
    return os.environ["FENRIR_TEST_PG_DSN"]


@pytest.fixture(scope="session")
def pg_dsn():
    """A database of this test run on the private cluster (dropped afterwards): its DSN."""
    if os.environ.get("FENRIR_SKIP_POSTGRES"):
        pytest.skip("FENRIR_SKIP_POSTGRES is set")
    import psycopg
    server = _server_dsn()
    name = "fenrir_test_%d_%s" % (os.getpid(), uuid.uuid4().hex[:8])
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("CREATE DATABASE %s" % name)
        # Commits of a test run need not survive a power cut: the WAL is flushed in the background.
        conn.execute("ALTER DATABASE %s SET synchronous_commit = off" % name)
    base = server.rsplit("/", 1)[0]
    yield "%s/%s" % (base, name)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


@pytest.fixture
def pg_loc(pg_dsn, tmp_path, monkeypatch):
    """A fresh PostgreSQL registry location: a schema of its own; the key in tmp_path/fleet.key."""
    import psycopg
    schema = "t%d_%s" % (next(_schemas), uuid.uuid4().hex[:6])
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA %s" % schema)
    monkeypatch.setenv("FENRIR_REGISTRY_KEY_FILE", str(tmp_path / "fleet.key"))
    return "%s?options=-csearch_path%%3D%s" % (pg_dsn, schema)
