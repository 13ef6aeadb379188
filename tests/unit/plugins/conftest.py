"""Fixtures of the plugin unit tests that need a real PostgreSQL server (registry locations on it).

``pg_loc`` is a schema of its own for one test in the run's database on the private cluster of
``scripts/ensure-postgres`` (``pg_location`` in tests/conftest.py; ``FENRIR_SKIP_POSTGRES=1`` skips every test
that needs it), its key file given through ``FENRIR_REGISTRY_KEY_FILE``.
"""

import pytest


@pytest.fixture
def pg_loc(pg_location, tmp_path, monkeypatch):
    """A fresh PostgreSQL registry location (tests/conftest.py); its key in tmp_path/fleet.key."""
    monkeypatch.setenv("FENRIR_REGISTRY_KEY_FILE", str(tmp_path / "fleet.key"))
    return pg_location
