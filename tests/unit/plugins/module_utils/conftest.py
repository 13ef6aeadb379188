"""Fixtures of the module_utils unit tests."""

import pytest


@pytest.fixture
def db(tmp_path):
    """Where a test's fleet registry lives (not created)."""
    return str(tmp_path / "fleet.db")
