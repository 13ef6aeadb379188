"""Fixtures of the module_utils unit tests: registry locations on both backends.

``loc`` is a registry location, once a SQLite file and once a PostgreSQL schema of its own in the test run's
database on the private cluster of ``scripts/ensure-postgres`` (started when ``FENRIR_TEST_PG_DSN`` is not set;
``FENRIR_SKIP_POSTGRES=1`` skips the PostgreSQL half).  A PostgreSQL registry keeps no key beside it: the test's
key file is given through ``FENRIR_REGISTRY_KEY_FILE``.  ``pg_loc`` is in tests/unit/plugins/conftest.py
(the module tests use it too).
"""

import pytest

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture
def db(tmp_path):
    """Where a test's fleet registry lives (not created)."""
    return str(tmp_path / "fleet.db")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def loc(backend, tmp_path, request):
    """A fresh registry location on each backend (not created)."""
    if backend == "sqlite":
        return str(tmp_path / "fleet.db")
    return request.getfixturevalue("pg_loc")
