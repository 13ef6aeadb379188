"""The collection's filter plugins are loaded on the controller, in the worker of every task that uses one (Ansible
imports every filter file of the collection to find a filter by name): they must not bring the Docker SDK with
them -- it cost each run's plan task about 0.2 s -- nor the work of the modules whose options they read."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
FILTERS = sorted(p.stem for p in (REPO / "plugins" / "filter").glob("*.py") if p.stem != "__init__")
HEAVY = ("docker", "requests", "urllib3", "psycopg",
         "ansible_collections.fenrir.fleet.plugins.module_utils.tenants",
         "ansible_collections.fenrir.fleet.plugins.module_utils.docker_common")


def loaded_after_import(module):
    """The modules of HEAVY that importing ``module`` loads, in a fresh interpreter (this one has them already)."""
    code = ("import sys, json; import %s; print(json.dumps([m for m in %r if m in sys.modules]))" % (module, HEAVY))
    # The collection as the test run imports it (tests/conftest.py puts collections/ on sys.path).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def test_there_are_filters_to_check():
    assert {"knarr", "tenants", "docker_host"} <= set(FILTERS)


@pytest.mark.parametrize("name", FILTERS)
def test_a_filter_plugin_does_not_load_the_docker_sdk(name):
    assert loaded_after_import("ansible_collections.fenrir.fleet.plugins.filter." + name) == []


def test_the_check_sees_the_sdk_where_it_is_loaded():
    assert "docker" in loaded_after_import("ansible_collections.fenrir.fleet.plugins.module_utils.docker_common")
