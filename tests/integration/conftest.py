"""Integration tests: real ansible-playbook runs against the real local Docker engine.

Each test gets a fleet of its own: a temporary inventory, registry and Docker network
(fenrir-itest, 172.24.0.0/24), so it never touches a fleet provisioned on the same machine.
Whatever a test leaves behind (even when killed) is removed before and after it.
"""
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_BIN = os.path.dirname(sys.executable)
NETWORK = "fenrir-itest"
SUBNET = "172.24.0.0/24"
LABEL_PREFIX = "it-"
FAULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faults")

try:
    import docker
    CLIENT = docker.from_env()
    CLIENT.ping()
except Exception:  # pragma: no cover - no engine
    CLIENT = None


def pytest_collection_modifyitems(items):
    if CLIENT is None:
        skip = pytest.mark.skip(reason="no Docker engine answers (run scripts/ensure-docker)")
        for item in items:
            if "integration" in str(item.fspath):
                item.add_marker(skip)


def remove_leftovers():
    """Remove the test fleet's containers and network, tolerating ones that vanish meanwhile."""
    from docker.errors import NotFound
    for c in CLIENT.containers.list(all=True, filters={"label": "fenrir.fleet.role=knarr-node"}, ignore_removed=True):
        if c.labels.get("fenrir.fleet.label", "").startswith(LABEL_PREFIX):
            try:
                c.remove(force=True)
            except NotFound:
                pass
    # Unlabelled containers named like a test node, as the original skill makes them (test_adoption).
    for c in CLIENT.containers.list(all=True, filters={"name": "^fenrir-" + LABEL_PREFIX}, ignore_removed=True):
        if not c.labels.get("fenrir.fleet.role"):
            try:
                c.remove(force=True)
            except NotFound:
                pass
    for n in CLIENT.networks.list(names=[NETWORK]):
        try:
            for cid in (CLIENT.api.inspect_network(n.id).get("Containers") or {}):
                try:
                    CLIENT.api.remove_container(cid, force=True)
                except NotFound:
                    pass
            n.remove()
        except NotFound:
            pass


class Fleet:
    """A temporary inventory of knarr nodes on the itest network, and ways to run playbooks on it."""

    def __init__(self, path):
        self.dir = path
        self.registry = os.path.join(path, "state", "fleet.db")
        self.inventory = os.path.join(path, "inventory")
        os.makedirs(os.path.join(self.inventory, "group_vars"))
        with open(os.path.join(self.inventory, "group_vars", "all.yml"), "w") as fh:
            fh.write(textwrap.dedent("""\
                ---
                knarr_node_registry: %s
                knarr_node_network: %s
                knarr_node_subnet: %s
                knarr_node_gateway: 172.24.0.1
                knarr_node_pool_start: 172.24.0.10
                knarr_node_pool_end: 172.24.0.249
                knarr_node_provisioner_endpoint: 172.24.0.1:9040
                knarr_node_boot_timeout: 20
                """ % (self.registry, NETWORK, SUBNET)))
        self.hosts = {}

    def set_hosts(self, hosts):
        """hosts: {label: {var: value}}; written as the knarr_nodes group."""
        self.hosts = hosts
        lines = ["---", "all:", "  hosts:", "    localhost:", "      ansible_connection: local",
                 "      ansible_python_interpreter: \"{{ ansible_playbook_python }}\"",
                 "  children:", "    knarr_nodes:", "      vars:", "        ansible_connection: local",
                 "        ansible_python_interpreter: \"{{ ansible_playbook_python }}\"", "      hosts:"]
        for label, hv in hosts.items():
            lines.append("        host-%s:" % label)
            lines.append("          knarr_node_label: %s" % json.dumps(label))
            for k, v in hv.items():
                lines.append("          %s: %s" % (k, json.dumps(v)))
        with open(os.path.join(self.inventory, "hosts.yml"), "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def play(self, playbook, *args, env=None, check=True):
        return run_playbook(self.inventory, playbook, *args, env=env, check=check)

    # -- what is there, seen from outside
    def containers(self):
        out = {}
        mine = {"label": ["fenrir.fleet.role=knarr-node", "fenrir.fleet.registry=%s" % os.path.abspath(self.registry)]}
        for c in CLIENT.containers.list(all=True, filters=mine, ignore_removed=True):
            if c.labels.get("fenrir.fleet.label", "").startswith(LABEL_PREFIX):
                nets = c.attrs["NetworkSettings"]["Networks"]
                out[c.labels["fenrir.fleet.label"]] = dict(
                    id=c.id, status=c.status, ip=(nets.get(NETWORK) or {}).get("IPAddress"),
                    started=c.attrs["State"]["StartedAt"])
        return out

    def rows(self):
        if not os.path.exists(self.registry):
            return {}
        db = sqlite3.connect(self.registry)  # read-write, so closing leaves no -wal/-shm behind
        try:
            db.row_factory = sqlite3.Row
            return {r["label"]: dict(r) for r in db.execute("SELECT * FROM nodes")}
        finally:
            db.close()

    def network_exists(self):
        return bool(CLIENT.networks.list(names=[NETWORK]))

    def snapshot(self):
        """Docker's view and the registry's bytes: equal snapshots mean nothing changed."""
        files = {}
        content = None
        if os.path.exists(self.registry):
            db = sqlite3.connect(self.registry)
            try:
                content = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
            finally:
                db.close()
        state_dir = os.path.dirname(self.registry)
        if os.path.isdir(state_dir):
            for name in sorted(os.listdir(state_dir)):
                with open(os.path.join(state_dir, name), "rb") as fh:
                    files[name] = hashlib.sha256(fh.read()).hexdigest()
        return dict(containers=self.containers(), network=self.network_exists(), files=files, content=content)


def run_playbook(inventory, playbook, *args, env=None, check=True):
    """ansible-playbook (a name under playbooks/, or a path) on ``inventory``, its JSON output as a Result;
    with ``check``, a failed run fails the test."""
    environ = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                   ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1",
                   PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    environ.update(env or {})
    if "FENRIR_FAULT_POINT" in environ:  # arm the fault injector (tests/integration/faults)
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (FAULTS_DIR, environ.get("PYTHONPATH")) if p)
    path = playbook if os.path.isabs(playbook) else os.path.join(ROOT, "playbooks", playbook)
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, path] + list(args),
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600, check=False)
    result = Result(proc)
    if check and proc.returncode != 0:
        raise AssertionError("%s failed (rc %d):\n%s\n%s" % (playbook, proc.returncode, result.errors(),
                                                             proc.stderr[-3000:]))
    return result


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        try:
            self.data = json.loads(proc.stdout[proc.stdout.index("{"):])
        except ValueError:
            self.data = {"plays": [], "stats": {}}

    def tasks(self):
        for play in self.data.get("plays", []):
            for task in play.get("tasks", []):
                yield task["task"]["name"], task["hosts"]

    def task_result(self, name_part):
        for name, hosts in self.tasks():
            if name_part in name:
                return next(iter(hosts.values()))
        return None

    def changed(self):
        return sum(s.get("changed", 0) for s in self.data.get("stats", {}).values())

    def errors(self):
        msgs = []
        for name, hosts in self.tasks():
            for host, res in hosts.items():
                if res.get("failed"):
                    msgs.append("%s [%s]: %s" % (name, host, res.get("msg")))
        return "\n".join(msgs) or self.stdout[-2000:]


@pytest.fixture
def fleet(tmp_path):
    remove_leftovers()
    f = Fleet(str(tmp_path))
    yield f
    remove_leftovers()


@pytest.fixture(scope="module")
def module_fleet(tmp_path_factory):
    """One fleet for a whole test module (tests that must leave it as they found it)."""
    remove_leftovers()
    f = Fleet(str(tmp_path_factory.mktemp("fleet")))
    yield f
    remove_leftovers()
