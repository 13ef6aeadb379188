"""Integration tests: real ansible-playbook runs against the real local Docker engine.

Each test gets a fleet of its own: a temporary inventory, registry and Docker network
(fenrir-itest, 172.24.0.0/24), so it never touches a fleet provisioned on the same machine.
Whatever a test leaves behind (even when killed) is removed before and after it.
"""
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import textwrap

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VENV_BIN = os.path.dirname(sys.executable)
NETWORK = "fenrir-itest"
SUBNET = "172.24.0.0/24"
LABEL_PREFIX = "it-"
# The PostgreSQL tests' fleets live apart (network, subnet, labels): a run of the SQLite tests from another
# checkout on the same machine removes every it-* container and every network whose name contains fenrir-itest
# (Docker's name filter matches parts of names) as its leftovers.
PG_NETWORK = "fenrir-pgtest"
PG_SUBNET = "172.23.0.0/24"
PG_PREFIX = "ipg-"
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


def remove_leftovers(prefix=LABEL_PREFIX, network=NETWORK):
    """Remove the test fleet's containers and network, tolerating ones that vanish meanwhile."""
    from docker.errors import NotFound
    for c in CLIENT.containers.list(all=True, filters={"label": "fenrir.fleet.role=knarr-node"}, ignore_removed=True):
        if c.labels.get("fenrir.fleet.label", "").startswith(prefix):
            try:
                c.remove(force=True)
            except NotFound:
                pass
    # Unlabelled containers named like a test node, as the original skill makes them (test_adoption).
    for c in CLIENT.containers.list(all=True, filters={"name": "^fenrir-" + prefix}, ignore_removed=True):
        if not c.labels.get("fenrir.fleet.role"):
            try:
                c.remove(force=True)
            except NotFound:
                pass
    for n in CLIENT.networks.list(names=[network]):
        if n.name != network:  # the filter matches parts of names
            continue
        try:
            for cid in (CLIENT.api.inspect_network(n.id).get("Containers") or {}):
                try:
                    CLIENT.api.remove_container(cid, force=True)
                except NotFound:
                    pass
            n.remove()
        except NotFound:
            pass


def node_group_lines(nodes):
    """The knarr_nodes group of a YAML inventory (under ``children:``): host-<label> for every node of ``nodes``
    ({label: {var: value}}), on the controller's own connection."""
    lines = ["    knarr_nodes:", "      vars:", "        ansible_connection: local",
             "        ansible_python_interpreter: \"{{ ansible_playbook_python }}\"", "      hosts:"]
    for label, hv in nodes.items():
        lines.append("        host-%s:" % label)
        lines.append("          knarr_node_label: %s" % json.dumps(label))
        for k, v in hv.items():
            lines.append("          %s: %s" % (k, json.dumps(v)))
    if not nodes:
        lines[-1] = "      hosts: {}"
    return lines


class Fleet:
    """A temporary inventory of knarr nodes on the itest network, and ways to run playbooks on it.

    The registry is a SQLite file under ``path`` (``registry=None``), or the PostgreSQL registry at the DSN
    ``registry`` (a schema of the test run's database, see ``pg_location``) with its key file under ``path``.
    ``network``, ``subnet`` and ``prefix`` (of the labels) default to the shared test fleet's."""

    def __init__(self, path, registry=None, network=NETWORK, subnet=SUBNET, prefix=LABEL_PREFIX):
        import ipaddress
        net = ipaddress.IPv4Network(subnet)
        self.network, self.subnet, self.prefix = network, subnet, prefix
        self.gateway = str(net.network_address + 1)
        self.pool_start = net.network_address + 10
        self.dir = path
        self.backend = "sqlite" if registry is None else "postgresql"
        self.registry = registry or os.path.join(path, "state", "fleet.db")
        self.key_file = os.path.join(path, "state", "fleet.key")
        self.inventory = os.path.join(path, "inventory")
        os.makedirs(os.path.join(self.inventory, "group_vars"))
        key_line = ""
        if registry is not None:  # a PostgreSQL registry keeps no key beside it: the fleet's key file is given
            os.makedirs(os.path.dirname(self.key_file), mode=0o700)
            key_line = "knarr_node_registry_key_file: %s\n" % self.key_file
        with open(os.path.join(self.inventory, "group_vars", "all.yml"), "w") as fh:
            fh.write(textwrap.dedent("""\
                ---
                knarr_node_registry: %s
                knarr_node_network: %s
                knarr_node_subnet: %s
                knarr_node_gateway: %s
                knarr_node_pool_start: %s
                knarr_node_pool_end: %s
                knarr_node_provisioner_endpoint: %s:9040
                knarr_node_boot_timeout: 20
                """ % (json.dumps(self.registry), network, subnet, self.gateway, self.pool_start,
                       net.network_address + 249, self.gateway)) + key_line)
        self.hosts = {}

    def ip(self, n):
        """The pool's n-th address (0: the first a new node gets)."""
        return str(self.pool_start + n)

    def label(self, name):
        return self.prefix + name

    def clean(self):
        remove_leftovers(self.prefix, self.network)

    @property
    def shown(self):
        """The registry as containers are labelled with it: the file's absolute path, the DSN without password."""
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry import registry_id
        return registry_id(self.registry)

    def set_hosts(self, hosts):
        """hosts: {label: {var: value}}; written as the knarr_nodes group."""
        self.hosts = hosts
        lines = ["---", "all:", "  hosts:", "    localhost:", "      ansible_connection: local",
                 "      ansible_python_interpreter: \"{{ ansible_playbook_python }}\"",
                 "  children:"] + node_group_lines(hosts)
        with open(os.path.join(self.inventory, "hosts.yml"), "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def play(self, playbook, *args, env=None, check=True):
        return run_playbook(self.inventory, playbook, *args, env=env, check=check)

    # -- what is there, seen from outside
    def containers(self):
        out = {}
        mine = {"label": ["fenrir.fleet.role=knarr-node", "fenrir.fleet.registry=%s" % self.shown]}
        for c in CLIENT.containers.list(all=True, filters=mine, ignore_removed=True):
            if c.labels.get("fenrir.fleet.label", "").startswith(self.prefix):
                nets = c.attrs["NetworkSettings"]["Networks"]
                out[c.labels["fenrir.fleet.label"]] = dict(
                    id=c.id, status=c.status, ip=(nets.get(self.network) or {}).get("IPAddress"),
                    started=c.attrs["State"]["StartedAt"], registry=c.labels.get("fenrir.fleet.registry"))
        return out

    def sql(self, statement):
        """Rows of ``statement`` as dicts, read behind the registry's back ({} when there is no registry)."""
        if self.backend == "postgresql":
            import psycopg
            from psycopg.rows import dict_row
            with psycopg.connect(self.registry, autocommit=True, row_factory=dict_row) as conn:
                tables = {r["table_name"] for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}
                return conn.execute(statement).fetchall() if "nodes" in tables else []
        if not os.path.exists(self.registry):
            return []
        db = sqlite3.connect(self.registry)  # read-write, so closing leaves no -wal/-shm behind
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(statement)]
        finally:
            db.close()

    def rows(self):
        return {r["label"]: r for r in self.sql("SELECT * FROM nodes")}

    def network_exists(self):
        return bool(CLIENT.networks.list(names=[self.network]))

    def snapshot(self):
        """Docker's view and the registry's bytes: equal snapshots mean nothing changed."""
        files = {}
        content = None
        if self.backend == "postgresql":
            tables = ("registry_meta", "nodes", "held_runs", "hosts", "tenants", "audit")
            dump = [self.sql("SELECT * FROM %s ORDER BY 1" % t) for t in tables]
            content = hashlib.sha256(repr(dump).encode()).hexdigest() if dump[0] else None
        elif os.path.exists(self.registry):
            db = sqlite3.connect(self.registry)
            try:
                content = hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()
            finally:
                db.close()
        state_dir = os.path.dirname(self.key_file)
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


# --------------------------------------------------------------------------- PostgreSQL
# (pg_cluster, pg_database and pg_location are in tests/conftest.py)

def apart_fleet(path, registry=None):
    """A fleet on the PostgreSQL tests' own network, subnet and labels (see PG_NETWORK)."""
    return Fleet(path, registry=registry, network=PG_NETWORK, subnet=PG_SUBNET, prefix=PG_PREFIX)


@pytest.fixture
def pg_fleet(tmp_path, pg_location):
    """A fleet whose registry is PostgreSQL."""
    f = apart_fleet(str(tmp_path), registry=pg_location)
    f.clean()
    yield f
    f.clean()


@pytest.fixture
def sqlite_fleet_apart(tmp_path):
    """A fleet whose registry is SQLite, on the PostgreSQL tests' network (for moving it there)."""
    f = apart_fleet(str(tmp_path))
    f.clean()
    yield f
    f.clean()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_fleet(request, tmp_path):
    """A fleet on each backend (tests choose their cases with ``indirect``); the PostgreSQL one apart."""
    if request.param == "postgresql":
        f = apart_fleet(str(tmp_path), registry=request.getfixturevalue("pg_location"))
    else:
        f = Fleet(str(tmp_path))
    f.clean()
    yield f
    f.clean()


# --------------------------------------------------------------------------- the original skill's fleet

ORIGINAL_IP = "172.24.0.50"


def _tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def original_registry(path, insert, args):
    """A fleet.db in the original skill's layout (plain-text secret columns) holding one row."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE fleet_nodes (label TEXT PRIMARY KEY, server_id, provider, location, ip, node_id, "
               "encryption_key, seed_encrypted, nonce, status TEXT DEFAULT 'provisioning', created_at REAL, "
               "last_seen REAL, report_received_at REAL)")
    db.execute(insert, args)
    db.commit()
    db.close()


def original_node(seed, label="it-o", ip=ORIGINAL_IP, network=NETWORK, subnet=SUBNET):
    """What the skill left behind of a node: its container (docker create with --ip and limits, the three files
    copied in, no labels), on the test network (made here). Returns the container's id."""
    import docker
    from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
    from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_config as kc
    from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import normalize_node
    import ipaddress
    gateway = str(ipaddress.IPv4Network(subnet).network_address + 1)
    pool = docker.types.IPAMPool(subnet=subnet, gateway=gateway)
    CLIENT.networks.create(network, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[pool]))
    container = CLIENT.api.create_container(
        "knarr-cluster-node:latest", name="fenrir-" + label, detach=True,
        host_config=CLIENT.api.create_host_config(mem_limit=256 * 2 ** 20, pids_limit=50,
                                                  restart_policy={"Name": "unless-stopped"}, network_mode=network),
        networking_config=CLIENT.api.create_networking_config(
            {network: CLIENT.api.create_endpoint_config(ipv4_address=ip)}))
    spec = normalize_node({"label": label, "location": "lab"})
    files = kc.node_files(spec, ip)
    files[kc.CONFIG_DIR + "/node.db"] = (ident.build_node_db(seed), 0o600)
    CLIENT.api.put_archive(container["Id"], "/", _tar(files))
    CLIENT.api.start(container["Id"])
    return container["Id"]
