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


import sqlite3  # noqa: E402

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
