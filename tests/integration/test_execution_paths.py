"""One module, two ways to run it, the same outcome.

The registry, image, network and container modules run in the controller's worker when their connection is local
(plugins/plugin_utils/in_process.py) and as ordinary modules otherwise. Here every such module runs on the same
input both ways -- in the worker through the action plugin's own code, and as Ansible runs a module, a separate
Python process reading its arguments -- against the real registry and the real Docker engine, and the results,
warnings, deprecations and no_log masking are compared. A last test runs them from ansible-playbook with a task
``environment:``, which only the in-process path could have missed.
"""

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from conftest import NETWORK, ROOT, VENV_BIN, remove_leftovers
from ansible_collections.fenrir.fleet.plugins.module_utils import (
    fleet_network, fleet_placement, fleet_registry, identity, knarr_container, knarr_image)
from ansible_collections.fenrir.fleet.plugins.plugin_utils.in_process import InProcessModuleAction

COLLECTIONS_DIR = os.path.join(ROOT, "collections")
SEED, OTHER_SEED = bytes(range(7, 39)), bytes(range(9, 41))
NODE_DB_B64 = base64.b64encode(identity.build_node_db(SEED)).decode()
OTHER_NODE_DB_B64 = base64.b64encode(identity.build_node_db(OTHER_SEED)).decode()
TOKEN = "cockpit-token-that-must-never-show-%s" % os.urandom(4).hex()
# The operator's own provisioner identity (a bare seed): the same for both runs, so their plans can be compared.
PROVISIONER_SEED = os.urandom(32)
PROVISIONER_B64 = base64.b64encode(PROVISIONER_SEED).decode()
VOLATILE = {"invocation", "created_at", "updated_at", "last_seen", "report_received_at"}


def in_worker(logic, args, check_mode=False, diff=False):
    """The in-process path: the action plugin's own validation, run and masking."""
    cls = type("Action", (InProcessModuleAction,), dict(LOGIC=logic))
    return cls.__new__(cls).run_here(dict(args), check_mode, diff)


def as_module(logic, args, tmp_path, check_mode=False, diff=False):
    """The ordinary path: the module file in its own Python process, as Ansible executes it."""
    argfile = tmp_path / ("args-%s.json" % os.urandom(4).hex())
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(
        args, _ansible_check_mode=check_mode, _ansible_diff=diff, _ansible_module_name="fenrir.fleet." + logic.NAME)}))
    module = "ansible_collections.fenrir.fleet.plugins.modules.%s" % logic.NAME
    proc = subprocess.run([sys.executable, "-m", module, str(argfile)], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=COLLECTIONS_DIR), check=False)
    return json.loads(proc.stdout)


def normal(result, *paths):
    """A result without what legitimately differs between two runs: timestamps, the invocation, the registry
    copies' directories, and deprecations reduced to their text."""
    text = json.dumps(result, sort_keys=True)
    for path in paths:
        text = text.replace(str(path), "<dir>")
    data = json.loads(text)

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    data = strip(data)
    # A module reports DeprecationSummary objects, an action plugin plain dicts: the controller makes the same of both.
    data["deprecations"] = sorted(d.get("msg") or d["event"]["msg"] for d in data.get("deprecations") or [])
    data["warnings"] = sorted(data.get("warnings") or [])
    if not data.get("failed"):
        data.pop("failed", None)
    return data


def both(logic, args_for, tmp_path, check_mode=False, diff=False, setup=None):
    """Run the module both ways on copies of the same starting state; returns the two normalised results."""
    dirs = []
    for name in ("worker", "module"):
        d = tmp_path / name
        d.mkdir(parents=True)
        if setup:
            setup(d)
        dirs.append(d)
    one = in_worker(logic, args_for(dirs[0]), check_mode, diff)
    two = as_module(logic, args_for(dirs[1]), tmp_path, check_mode, diff)
    for secret in (NODE_DB_B64, OTHER_NODE_DB_B64, TOKEN, PROVISIONER_B64):
        assert secret not in json.dumps(one) and secret not in json.dumps(two)
    return normal(one, *dirs), normal(two, *dirs)


@pytest.fixture(autouse=True)
def clean():
    remove_leftovers()
    yield
    remove_leftovers()


def reserved(d):
    """A registry holding two nodes with given identities, as fleet_registry leaves it."""
    in_worker(fleet_registry, dict(registry=str(d / "fleet.db"), subnet="172.24.0.0/24", nodes=[
        dict(label="it-a", node_db_b64=NODE_DB_B64), dict(label="it-b", node_db_b64=OTHER_NODE_DB_B64)]))


@pytest.mark.parametrize("check_mode", [False, True])
def test_fleet_registry(tmp_path, check_mode):
    one, two = both(fleet_registry, lambda d: dict(
        registry=str(d / "fleet.db"), subnet="172.24.0.0/24",
        nodes=[dict(label="it-a", node_db_b64=NODE_DB_B64, location="lab"), dict(label="it-b", ip="172.24.0.77")]),
        tmp_path, check_mode=check_mode, diff=True)
    for result in (one, two):  # the node without a given identity gets a fresh, random one
        for node in result["nodes"]:
            if node["label"] == "it-b":
                node["node_id"] = "<random>"
        for side in ("before", "after"):
            for view in result["diff"][side].values():
                if view and view.get("label") == "it-b":
                    view["node_id"] = "<random>"
    assert one == two
    assert one["changed"] is True and [n["ip"] for n in one["nodes"]] == ["172.24.0.10", "172.24.0.77"]


def test_fleet_registry_deprecated_alias_and_bad_input(tmp_path):
    one, two = both(fleet_registry, lambda d: dict(db=str(d / "fleet.db"), label="it-a", node_db_b64=NODE_DB_B64),
                    tmp_path)
    assert one == two and one["deprecations"] == ["Alias 'db' is deprecated. See the module docs for more information"]
    for args in (dict(label="it-a", colour="red"), dict(label="it-a", ip="10.9.9.9"),
                 dict(label="it-a", node_db_b64=base64.b64encode(b"no").decode())):
        one, two = both(fleet_registry, lambda d, a=args: dict(a, registry=str(d / "x.db")), tmp_path / str(id(args)))
        assert one["failed"] and one["msg"] == two["msg"]


@pytest.mark.parametrize("check_mode", [False, True])
def test_fleet_placement(tmp_path, check_mode):
    """Without Docker hosts (nothing placed, nothing written), and with one (placed, identities kept)."""
    one, two = both(fleet_placement, lambda d: dict(registry=str(d / "fleet.db"), nodes=[dict(label="it-a")]),
                    tmp_path / "none", check_mode)
    assert one == two and one["hosts_mode"] is False

    def with_host(d):
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry
        with Registry(str(d / "fleet.db")) as reg:
            reg.ensure_host("it-host", address="10.9.9.9", endpoint="tcp://10.9.9.9:2376", status="connected")
    one, two = both(fleet_placement, lambda d: dict(registry=str(d / "fleet.db"), tls_dir=str(d / "pki"), nodes=[
        dict(label="it-a", node_db_b64=NODE_DB_B64), dict(label="it-b", docker_host="local", node_db_b64=OTHER_NODE_DB_B64)]),
        tmp_path / "host", check_mode, diff=True, setup=with_host)
    assert one == two and one["hosts_mode"] and one["changed"]
    assert {n["label"]: n["engine"] for n in one["nodes"]} == {"it-a": "it-host", "it-b": "local"}


def test_knarr_image(tmp_path):
    for images in ({"knarr-cluster-node:latest": ["it-a"]}, {"fenrir-no-such-image:1": ["it-a", "it-b"]}):
        one, two = both(knarr_image, lambda d, i=images: dict(images=i), tmp_path / str(len(images) + len(str(images))))
        assert one == two


def test_fleet_network_check_mode_and_refusal(tmp_path):
    one, two = both(fleet_network, lambda d: dict(name=NETWORK, subnet="172.24.0.0/24"), tmp_path,
                    check_mode=True, diff=True)
    assert one == two and one["changed"] is True
    one, two = both(fleet_network, lambda d: dict(name=NETWORK, subnet="172.24.0.0/33"), tmp_path / "bad")
    assert one == two and one["failed"]
    one, two = both(fleet_network, lambda d: dict(name=NETWORK, docker_host="http://127.0.0.1:2375"), tmp_path / "h")
    assert one == two and "only unix://, tcp:// and https://" in one["msg"]


def test_knarr_container_check_mode_plan_and_diff(tmp_path):
    def args(d):
        return dict(registry=str(d / "fleet.db"), network=NETWORK, provisioner_db_b64=PROVISIONER_B64, nodes=[
            dict(label="it-a", config_overrides=dict(mail=dict(smtp_password=TOKEN))), dict(label="it-b")])
    one, two = both(knarr_container, args, tmp_path, check_mode=True, diff=True, setup=reserved)
    assert one == two
    assert one["changed"] is True and {n["label"] for n in one["nodes"]} == {"it-a", "it-b"}
    assert one["provisioner_node_id"] == identity.node_id_from_seed(PROVISIONER_SEED)
    assert "********" in json.dumps(one["diff"])  # the password (and the cockpit's token) masked in knarr.toml
    assert TOKEN not in json.dumps(one)


def test_the_tasks_environment_reaches_the_module_in_the_worker(tmp_path):
    """FENRIR_ACTOR (the audit trail's actor) and DOCKER_HOST set on a task, run from ansible-playbook."""
    registry = tmp_path / "fleet.db"
    playbook = tmp_path / "play.yml"
    playbook.write_text("""
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Reserve with an actor of the task's own
      fenrir.fleet.fleet_registry:
        registry: %s
        label: it-env
      environment:
        FENRIR_ACTOR: ops-from-the-task
    - name: Check an image on the engine the task names
      fenrir.fleet.knarr_image:
        images: {"knarr-cluster-node:latest": [it-env]}
      environment:
        DOCKER_HOST: tcp://127.0.0.1:1
      register: unreachable
      failed_when: "'127.0.0.1:1' not in unreachable.msg"
""" % registry)
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), str(playbook)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    conn = sqlite3.connect(str(registry))
    try:
        assert {r[0] for r in conn.execute("SELECT actor FROM audit")} == {"ops-from-the-task"}
    finally:
        conn.close()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_old_module_name_still_works_with_a_deprecation(tmp_path):
    """fenrir.fleet.fleet_node (and its option db) keep working through meta/runtime.yml's plugin_routing."""
    registry = tmp_path / "fleet.db"
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible"), "localhost", "-m", "fenrir.fleet.fleet_node",
                           "-a", "db=%s label=it-old" % registry, "-e",
                           "ansible_python_interpreter=%s" % sys.executable],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    output = " ".join((proc.stdout + proc.stderr).split())
    assert "fenrir.fleet.fleet_node is now fenrir.fleet.fleet_registry" in output
    assert "Alias 'db' is deprecated" in output
    conn = sqlite3.connect(str(registry))
    try:
        assert conn.execute("SELECT label, status FROM nodes").fetchall() == [("it-old", "provisioning")]
    finally:
        conn.close()
