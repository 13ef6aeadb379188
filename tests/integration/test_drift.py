"""Drift between the fleet registry and the real Docker engine (module_utils/drift.py, fleet_status,
playbooks/status.yml), releasing stale records, and the audit playbook (fleet_audit, playbooks/audit.yml).

Everything here lives on a network of its own, ``drifttest-net`` (172.31.250.0/24), with containers named
``fenrir-drifttest-*`` and labelled ``drifttest=1`` (also the "unlabelled" ones: they carry no
``fenrir.fleet.*`` label), all removed again by the fixtures, even when a test fails. Nothing else on the
engine is touched; other fleets' containers are ignored because they are labelled for other registries.
Skipped when no engine answers (conftest.py).
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest

from conftest import CLIENT, ROOT

sys.path.insert(0, os.path.join(ROOT, "collections"))
from ansible_collections.fenrir.fleet.plugins.module_utils import drift  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import make_client  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import wait_until_alive  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_wire import Identity  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry  # noqa: E402

VENV_BIN = Path(sys.executable).parent
IMAGE = "knarr-cluster-node:latest"
NETWORK = "drifttest-net"
SUBNET, GATEWAY = "172.31.250.0/24", "172.31.250.1"
POOL = Pool(SUBNET, GATEWAY, "172.31.250.10", "172.31.250.29")
STALE_POOL = Pool(SUBNET, GATEWAY, "172.31.250.100", "172.31.250.119")
MARK = "drifttest"
PORT = 9010
HOUR = 3600.0

# A knarr node with the identity of $NODE_SEED: the image's own peer, started on a config written here
# (as the image's user, in /tmp), so the drift probe meets a node that signs as that identity.
FAKE_NODE = r"""
import os, sqlite3
d = "/tmp/node"
os.makedirs(d + "/skills", exist_ok=True)
db = sqlite3.connect(d + "/node.db")
db.execute("CREATE TABLE IF NOT EXISTS node_identity (key_bytes BLOB)")
db.execute("DELETE FROM node_identity")
db.execute("INSERT INTO node_identity VALUES (?)", (bytes.fromhex(os.environ["NODE_SEED"]),))
db.commit()
db.close()
with open(d + "/skills/echo.py", "w") as f:
    f.write("async def handle(input_data):\n    return {'text': input_data['text']}\n")
with open(d + "/knarr.toml", "w") as f:
    f.write('[node]\nhost = "0.0.0.0"\nport = %d\n[skills.echo]\nhandler = "skills/echo.py:handle"\nprice = 0\n')
os.execvp("knarr", ["knarr", "serve", "--config", d + "/knarr.toml"])
""" % PORT
SLEEP = ["python3", "-c", "import time; time.sleep(1e6)"]


def seed(char):
    """A test identity per letter (throw-away seeds: these nodes live on a test network only)."""
    return hashlib.sha256(("drifttest-" + char).encode()).digest()


def node_id(char):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    public = Ed25519PrivateKey.from_private_bytes(seed(char)).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(public).hexdigest()


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run(cmd, check=True, env=None):
    environ = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0")
    environ.update(env or {})
    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, timeout=300, env=environ, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def adhoc(args, *flags):
    """fenrir.fleet.fleet_status as an ad-hoc task; returns its result (JSON callback)."""
    proc = run([VENV_BIN / "ansible", "localhost", "-m", "fenrir.fleet.fleet_status", "-a", json.dumps(args),
                "-e", "ansible_python_interpreter=%s" % sys.executable] + list(flags),
               env=dict(ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json"))
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    return data["plays"][0]["tasks"][0]["hosts"]["localhost"]


def status_playbook(db, *args, check=True):
    """playbooks/status.yml on ``db``; returns (process, the lines of its output, stripped of YAML quoting)."""
    proc = run([VENV_BIN / "ansible-playbook", "playbooks/status.yml", "-e", "knarr_node_registry=%s" % db,
                "-e", "knarr_node_network=%s" % NETWORK] + list(args), check=check)
    return proc, [line.strip(" -'\"") for line in proc.stdout.splitlines()]


# --------------------------------------------------------------------------- Docker fixtures

def _cleanup(api):
    """Remove what this module creates: containers labelled drifttest=1 named fenrir-drifttest-*, the network."""
    for c in api.containers(all=True, filters={"label": "%s=1" % MARK}):
        if any(n.lstrip("/").startswith("fenrir-drifttest-") for n in c["Names"]):
            api.remove_container(c["Id"], force=True)
    for net in api.networks(names=[NETWORK]):
        if net["Name"] == NETWORK:
            api.remove_network(net["Id"])


def _container(api, label, ip, registry_path, command, env=None, network=NETWORK, start=True):
    """A container fenrir-<label>: labelled like fenrir.fleet labels a node for ``registry_path``, or, when
    ``registry_path`` is None, like the original skill made them (no fenrir.fleet labels)."""
    name = "fenrir-%s" % label
    labels = {MARK: "1"}
    if registry_path is not None:
        labels.update({"fenrir.fleet.role": "knarr-node", "fenrir.fleet.label": label,
                       "fenrir.fleet.server_id": name, "fenrir.fleet.registry": str(registry_path)})
    networking = None
    if ip is not None:
        networking = api.create_networking_config({network: api.create_endpoint_config(ipv4_address=ip)})
    created = api.create_container(
        image=IMAGE, name=name, command=command, labels=labels, environment=env or {},
        healthcheck={"test": ["NONE"]}, detach=True,
        host_config=api.create_host_config(network_mode=network), networking_config=networking,
    )
    if start:
        api.start(created["Id"])
    return created["Id"]


@pytest.fixture(scope="module")
def engine():
    """The Docker API, the image checked, and the test network (removed again at the end)."""
    docker = pytest.importorskip("docker")
    api = CLIENT.api
    try:
        api.inspect_image(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip("image %s is not present (scripts/ensure-node-image builds it; nothing is pulled)" % IMAGE)
    _cleanup(api)  # leftovers of an interrupted run
    try:
        api.create_network(NETWORK, driver="bridge", labels={MARK: "1"}, ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=SUBNET, gateway=GATEWAY)]))
        yield api
    finally:
        _cleanup(api)


def _allocate(db, pool, labels, past=()):
    """Allocate ``labels`` in order, those in ``past`` an hour ago (their records then look stale)."""
    now = time.time()
    with Registry(str(db), actor="drift-test") as reg:
        for label in labels:
            with mock.patch("time.time", return_value=now - HOUR if label in past else now):
                with reg.transaction():
                    reg.ensure(dict(label=label, location="test"), pool)
        return {label: reg.get(label)["ip"] for label in labels}


@pytest.fixture(scope="module")
def drift_fleet(engine, tmp_path_factory):
    """A registry and containers showing every drift:

    ====  ============  ============================================  ===========================================
    node  registry      container (fenrir-drifttest-<node>)           expected drift
    ====  ============  ============================================  ===========================================
    a     online        running at its address, answers               none
    b     online        stopped                                       stopped
    c     online        running at .30                                address differs
    d     online        none                                          container missing
    e     failed        none                                          status failed, container missing
    f     provisioning  running at its address, does not answer;     status provisioning
                        record an hour old (not stale: running)
    g     destroyed     running at its old address                    (entry) not in registry
    h     online        running, not the recorded container,          container id differs
                        answers with another node id
    n     provisioning  none; record just made                        status provisioning, container missing
    s     provisioning  none; record an hour old                      status provisioning, stale provisioning,
                                                                      container missing
    t     provisioning  unlabelled, never started; an hour old        status provisioning, stale provisioning,
                                                                      stopped
    u     online        unlabelled (original skill), running, answers none (matched by name)
    z     online        at its address, labelled for another registry container missing (not z's)
    v     --            unlabelled, running on the network            (entry) not in registry
    w     --            unlabelled, on no network                     (ignored)
    x     --            running, labelled for this registry           (entry) not in registry
    y     --            running, labelled for another registry        (ignored)
    ====  ============  ============================================  ===========================================
    """
    api = engine
    db = tmp_path_factory.mktemp("drift") / "fleet.db"
    other = db.parent / "other" / "fleet.db"
    ip = {k.rsplit("-", 1)[1]: v for k, v in _allocate(
        db, POOL, ["drifttest-%s" % c for c in "abcdefghnstuz"], past={"drifttest-f", "drifttest-s", "drifttest-t"}
    ).items()}

    def server(c, identity, addr=None, registry=db):
        return _container(api, "drifttest-" + c, addr or ip[c], registry, ["python3", "-c", FAKE_NODE],
                          env={"NODE_SEED": seed(identity).hex()})

    def sleeper(c, addr=None, registry=db, **kw):
        return _container(api, "drifttest-" + c, addr or ip[c], registry, SLEEP, **kw)

    ids = dict(a=server("a", "a"), b=sleeper("b"), c=server("c", "c", "172.31.250.30"))
    api.stop(ids["b"], timeout=0)
    ids.update(f=sleeper("f"), g=sleeper("g"), h=server("h", "9"), x=sleeper("x", "172.31.250.40"),
               y=sleeper("y", "172.31.250.41", registry=other), u=server("u", "u", registry=None),
               t=sleeper("t", registry=None, start=False), v=sleeper("v", "172.31.250.42", registry=None),
               w=_container(api, "drifttest-w", None, None, SLEEP, network="none"),
               z=sleeper("z", registry=other))
    with Registry(str(db), actor="drift-test") as reg:
        with reg.transaction():
            for c in "abcduz":
                reg.set_fields("drifttest-%s" % c, status="online", node_id=node_id(c),
                               container_id=ids.get(c) if c in "abc" else None)
            reg.set_fields("drifttest-h", status="online", node_id=node_id("h"), container_id="0" * 64)
            reg.fail("drifttest-e", "test failure")
            reg.destroy("drifttest-g", reason="test")
    for addr in (ip["a"], "172.31.250.30", ip["h"], ip["u"]):
        wait_until_alive(addr, PORT, timeout=30, identity=Identity.generate())  # the test's own caller
    return dict(db=str(db), ip=ip, ids=ids, api=api)


def status(fleet, **params):
    return drift.fleet_status(dict(registry=fleet["db"], network=NETWORK, **params), make_client)


def by_label(result):
    out = {}
    for entry in result["nodes"]:
        assert entry["label"] not in out, "one entry per label expected"
        out[entry["label"]] = entry
    return out


class CountingClient:
    """The real client, counting the Docker API calls made through it."""

    def __init__(self, client):
        self._client = client
        self.calls = []
        outer = self

        class Api:
            def __getattr__(self, name):
                attr = getattr(client.api, name)
                if not callable(attr):
                    return attr

                def call(*args, **kwargs):
                    outer.calls.append(name)
                    return attr(*args, **kwargs)
                return call
        self.api = Api()

    def close(self):
        self._client.close()


# --------------------------------------------------------------------------- drift

def test_every_drift_is_reported(drift_fleet):
    fleet = drift_fleet
    before = digest(fleet["db"])
    clients = []

    def counting(params):
        clients.append(CountingClient(make_client(params)))
        return clients[0]
    result = drift.fleet_status(dict(registry=fleet["db"], network=NETWORK), counting)
    assert clients[0].calls == ["containers", "inspect_network"]  # however many nodes
    nodes = by_label(result)
    ip = {"drifttest-" + k: v for k, v in fleet["ip"].items()}

    assert [e["label"] for e in result["nodes"]] == ["drifttest-%s" % c for c in "abcdefhnstuz"] + [
        "drifttest-g", "drifttest-v", "drifttest-x"]
    a = nodes["drifttest-a"]
    assert a["drift"] == []
    assert (a["registry_status"], a["ip"], a["container_ip"], a["container_state"], a["matched_by"]) == (
        "online", ip["drifttest-a"], ip["drifttest-a"], "running", "label")
    assert a["container_name"] == "fenrir-drifttest-a" and a["container_id"] == fleet["ids"]["a"]
    assert a["server_id"] == "fenrir-drifttest-a" and a["node_id"] == node_id("a")

    b = nodes["drifttest-b"]
    assert b["drift"] == ["stopped"]
    assert b["container_state"] == "exited"
    assert b["container_ip"] == ip["drifttest-b"]  # the configured address: not an address drift

    c = nodes["drifttest-c"]
    assert c["drift"] == ["address differs"]
    assert (c["ip"], c["container_ip"]) == (ip["drifttest-c"], "172.31.250.30")

    d = nodes["drifttest-d"]
    assert d["drift"] == ["container missing"]
    assert d["container_state"] is None and d["container_ip"] is None and d["container_id"] is None

    assert nodes["drifttest-e"]["drift"] == ["status failed", "container missing"]
    assert nodes["drifttest-e"]["registry_status"] == "failed"
    assert nodes["drifttest-f"]["drift"] == ["status provisioning"]  # an hour old, but running
    assert nodes["drifttest-f"]["record_age"] >= HOUR - 10
    assert nodes["drifttest-h"]["drift"] == ["container id differs"]
    assert nodes["drifttest-n"]["drift"] == ["status provisioning", "container missing"]  # young: not stale
    assert nodes["drifttest-s"]["drift"] == ["status provisioning", "stale provisioning", "container missing"]
    t = nodes["drifttest-t"]
    assert t["drift"] == ["status provisioning", "stale provisioning", "stopped"]
    assert (t["matched_by"], t["container_state"], t["container_id"]) == ("name", "created", fleet["ids"]["t"])

    u = nodes["drifttest-u"]  # the original skill's container: no labels, found by its name
    assert u["drift"] == [] and u["matched_by"] == "name" and u["container_id"] == fleet["ids"]["u"]
    assert u["container_ip"] == ip["drifttest-u"]
    z = nodes["drifttest-z"]  # a container named like it, but another registry's
    assert z["drift"] == ["container missing"] and z["container_id"] is None

    g = nodes["drifttest-g"]  # destroyed in the registry, its container still there
    assert g["drift"] == ["not in registry"]
    assert g["registry_status"] is None and g["ip"] is None and g["container_state"] == "running"
    v = nodes["drifttest-v"]  # unlabelled, on the fleet network, nobody's
    assert v["drift"] == ["not in registry"]
    assert (v["container_name"], v["container_ip"], v["server_id"], v["matched_by"]) == (
        "fenrir-drifttest-v", "172.31.250.42", "fenrir-drifttest-v", "name")
    x = nodes["drifttest-x"]
    assert x["drift"] == ["not in registry"]
    assert (x["container_name"], x["container_ip"], x["server_id"], x["matched_by"]) == (
        "fenrir-drifttest-x", "172.31.250.40", "fenrir-drifttest-x", "label")
    assert "drifttest-y" not in nodes and "drifttest-w" not in nodes  # another registry's; not on the network
    assert not [e for e in result["nodes"] if not e["label"].startswith("drifttest-")]  # other fleets ignored

    assert result["in_sync"] is False and result["changed"] is False and result["released"] == []
    assert result["registry"] == fleet["db"] and result["network"] == NETWORK
    assert result["summary"] == dict(
        nodes=12, containers=10, ok=2, drifted=13, status_provisioning=4, stale_provisioning=2, status_failed=1,
        container_missing=5, stopped=2, address_differs=1, container_id_differs=1, not_answering=0,
        wrong_identity=0, not_in_registry=3, duplicate_container=0, not_in_inventory=0, host_unreachable=0)
    assert all(e["probe_error"] is None for e in result["nodes"])
    # Nothing changed: not the registry, not the containers.
    assert digest(fleet["db"]) == before
    assert fleet["api"].inspect_container("fenrir-drifttest-b")["State"]["Status"] == "exited"


def test_probe_adds_liveness_drift(drift_fleet):
    probed = status(drift_fleet, probe=True, probe_timeout=1.0)
    assert probed["provisioner_node_id"] is None  # the registry holds no provisioner identity: a throw-away one
    nodes = by_label(probed)
    assert nodes["drifttest-a"]["drift"] == []
    assert nodes["drifttest-a"]["probe_error"] is None
    assert nodes["drifttest-u"]["drift"] == []  # unlabelled, answers at its address
    assert nodes["drifttest-c"]["drift"] == ["address differs"]  # probed where it is: it answers
    assert nodes["drifttest-f"]["drift"] == ["status provisioning", "not answering"]
    assert nodes["drifttest-f"]["probe_error"]
    assert nodes["drifttest-h"]["drift"] == ["container id differs", "wrong identity"]
    assert node_id("9") in nodes["drifttest-h"]["probe_error"]
    assert nodes["drifttest-b"]["drift"] == ["stopped"]  # not running: not probed
    assert nodes["drifttest-x"]["drift"] == ["not in registry"]  # not a registry node: not probed
    assert nodes["drifttest-v"]["drift"] == ["not in registry"]

    # With the registry's provisioner identity (and its key at hand), the probes are signed with it.
    with Registry(drift_fleet["db"], actor="drift-test") as reg:
        provisioner = Identity(reg.provisioner_seed())
    probed = status(drift_fleet, probe=True, probe_timeout=1.0)
    assert probed["provisioner_node_id"] == provisioner.node_id
    assert by_label(probed)["drifttest-a"]["drift"] == []


def test_in_sync_when_only_healthy_nodes(drift_fleet, tmp_path):
    """A registry whose nodes are a and u: in sync. Containers of the big registry are not another's."""
    fleet = drift_fleet
    with Registry(fleet["db"], check_mode=True) as reg:
        nodes = [reg.get("drifttest-a"), reg.get("drifttest-u")]
    api = fleet["api"]
    info = api.inspect_network(NETWORK)
    containers = [drift.container_view(c, NETWORK, info) for c in api.containers(all=True)]
    entries = drift.compare(nodes, containers, fleet["db"])
    assert [(e["label"], e["drift"]) for e in entries if e["registry_status"]] == [
        ("drifttest-a", []), ("drifttest-u", [])]
    entries = drift.compare(nodes, containers, str(tmp_path / "fleet.db"))
    # For another registry a's container is not its; u's (unlabelled) is found by name.
    assert [(e["label"], e["drift"]) for e in entries if e["registry_status"]] == [
        ("drifttest-a", ["container missing"]), ("drifttest-u", [])]


def test_fleet_status_module_and_status_playbook(drift_fleet, tmp_path):
    fleet = drift_fleet
    before = digest(fleet["db"])
    proc = run([VENV_BIN / "ansible", "localhost", "--check", "-m", "fenrir.fleet.fleet_status",
                "-a", "registry=%s network=%s" % (fleet["db"], NETWORK)])
    assert "changed: false" in proc.stdout and "in_sync: false" in proc.stdout

    out = tmp_path / "status.json"
    proc, lines = status_playbook(fleet["db"], "-e", "fenrir_status_json=%s" % out)
    start = lines.index("Registry %s, network %s" % (fleet["db"], NETWORK))
    table = [line.split() for line in lines[start + 1:start + 25]]
    assert table[0] == ["LABEL", "IP", "REGISTRY", "CONTAINER", "DRIFT"]
    ip = fleet["ip"]
    assert table[1:] == [
        ["drifttest-a", ip["a"], "online", "running", "in", "sync"],
        ["drifttest-b", ip["b"], "online", "exited", "stopped"],
        ["drifttest-c", ip["c"], "online", "running", "address", "differs", "(172.31.250.30)"],
        ["drifttest-d", ip["d"], "online", "-", "container", "missing"],
        ["drifttest-e", ip["e"], "failed", "-", "status", "failed"],
        ["container", "missing"],
        ["drifttest-f", ip["f"], "provisioning", "running", "status", "provisioning"],
        ["drifttest-h", ip["h"], "online", "running", "container", "id", "differs"],
        ["drifttest-n", ip["n"], "provisioning", "-", "status", "provisioning"],
        ["container", "missing"],
        ["drifttest-s", ip["s"], "provisioning", "-", "status", "provisioning"],
        ["stale", "provisioning", table[12][2]],
        ["container", "missing"],
        ["drifttest-t", ip["t"], "provisioning", "created", "status", "provisioning"],
        ["stale", "provisioning", table[15][2]],
        ["stopped"],
        ["drifttest-u", ip["u"], "online", "running", "in", "sync"],
        ["drifttest-z", ip["z"], "online", "-", "container", "missing"],
        ["drifttest-g", "-", "-", "running", "not", "in", "registry", "(%s)" % ip["g"]],
        ["drifttest-v", "-", "-", "running", "not", "in", "registry", "(172.31.250.42)"],
        ["drifttest-x", "-", "-", "running", "not", "in", "registry", "(172.31.250.40)"],
        ["12", "node(s):", "2", "in", "sync,", "13", "entries", "with", "drift."],
        ["Stale:", "2", "record(s);", "-e", "fenrir_status_release_stale=true", "frees", "them."],
    ]  # (a row folded by the YAML result format would not parse like this)
    assert int(table[12][2].strip("(s)")) >= HOUR - 10 and table[15][2].endswith("s)")
    assert any(line.startswith("Audit chain: intact (") for line in lines)
    assert "changed=1" in proc.stdout  # the JSON file, asked for
    report = json.loads(out.read_text())
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert report["in_sync"] is False and report["audit"]["ok"] is True and report["released"] == []
    assert report["summary"]["container_missing"] == 5 and report["summary"]["stale_provisioning"] == 2
    assert {e["label"]: e["drift"] for e in report["nodes"]}["drifttest-c"] == ["address differs"]
    assert digest(fleet["db"]) == before  # no release asked: the registry is only read


def test_unreadable_registry_is_a_clear_error(tmp_path):
    with pytest.raises(drift.DriftError, match="does not exist"):
        drift.fleet_status(dict(registry=str(tmp_path / "none.db")), make_client)
    assert not (tmp_path / "none.db").exists()


# --------------------------------------------------------------------------- stale records, released

@pytest.fixture
def stale_fleet(engine, tmp_path):
    """A registry of its own with two stale records among ones that must stay:

    ==  ============  =================================  ===============================
    r1  provisioning  none; an hour old                  stale: released
    r2  provisioning  stopped; an hour old               stale: released
    r3  provisioning  running; an hour old               kept (a run at work, or a node up)
    r4  provisioning  none; just made                    kept (young)
    r5  online        none; an hour old                  kept (not provisioning)
    r6  provisioning  unlabelled, running; an hour old   kept (found by name, running)
    ==  ============  =================================  ===============================
    """
    api = engine
    db = tmp_path / "stale" / "fleet.db"
    labels = ["drifttest-r%d" % i for i in range(1, 7)]
    ip = _allocate(db, STALE_POOL, labels, past=set(labels) - {"drifttest-r4"})
    with mock.patch("time.time", return_value=time.time() - HOUR):
        with Registry(str(db), actor="drift-test") as reg, reg.transaction():
            reg.set_fields("drifttest-r5", status="online")
    ids = dict(r2=_container(api, "drifttest-r2", ip["drifttest-r2"], db, SLEEP),
               r3=_container(api, "drifttest-r3", ip["drifttest-r3"], db, SLEEP),
               r6=_container(api, "drifttest-r6", ip["drifttest-r6"], None, SLEEP))
    api.stop(ids["r2"], timeout=0)
    yield dict(db=str(db), ip=ip)
    for name in ("fenrir-drifttest-r2", "fenrir-drifttest-r3", "fenrir-drifttest-r6"):
        api.remove_container(name, force=True)


def test_release_stale_module_check_diff_and_run(stale_fleet, registry_rows):
    db = stale_fleet["db"]
    args = dict(registry=db, network=NETWORK, release_stale=True)
    before, before_rows = digest(db), registry_rows(db)

    planned = adhoc(args, "--check", "--diff")
    assert planned["changed"] is True and planned["released"] == ["drifttest-r1", "drifttest-r2"]
    assert planned["diff"]["before"]["drifttest-r1"] == dict(
        status="provisioning", reason=None, ip=stale_fleet["ip"]["drifttest-r1"], address_held=True)
    assert planned["diff"]["after"]["drifttest-r2"]["status"] == "failed"
    assert planned["diff"]["after"]["drifttest-r2"]["address_held"] is False
    assert digest(db) == before and registry_rows(db) == before_rows  # check mode wrote nothing

    done = adhoc(args, "--diff")
    assert done["changed"] is True and done["released"] == ["drifttest-r1", "drifttest-r2"]
    after_rows = registry_rows(db)
    for label in ("drifttest-r3", "drifttest-r4", "drifttest-r5", "drifttest-r6"):
        assert after_rows[label] == before_rows[label], label
    for label in ("drifttest-r1", "drifttest-r2"):
        row = after_rows[label]
        assert (row["status"], row["ip_int"], row["ip"]) == ("failed", None, stale_fleet["ip"][label])
        assert row["reason"].startswith("stale provisioning: unchanged for ")
        assert done["diff"]["after"][label] == dict(status="failed", reason=row["reason"], ip=row["ip"],
                                                    address_held=False)
    states = {e["label"]: (e["registry_status"], e["drift"]) for e in done["nodes"]}
    assert states["drifttest-r1"] == ("failed", ["status failed", "container missing"])
    assert states["drifttest-r2"] == ("failed", ["status failed", "stopped"])
    assert states["drifttest-r3"] == ("provisioning", ["status provisioning"])
    assert states["drifttest-r6"] == ("provisioning", ["status provisioning"])
    assert done["summary"]["stale_provisioning"] == 0
    audit = drift.audit(db)
    assert audit["ok"] is True
    with Registry(db, check_mode=True) as reg:
        assert [(e["action"], e["label"]) for e in reg.audit_entries()[-2:]] == [
            ("fail", "drifttest-r1"), ("fail", "drifttest-r2")]

    again = adhoc(args, "--diff")
    assert again["changed"] is False and again["released"] == []
    assert registry_rows(db) == after_rows


def test_release_stale_from_the_status_playbook(stale_fleet, registry_rows):
    db = stale_fleet["db"]
    before = digest(db)
    proc, lines = status_playbook(db)
    assert "Stale: 2 record(s); -e fenrir_status_release_stale=true frees them." in lines
    assert digest(db) == before and "changed=0" in proc.stdout

    proc, lines = status_playbook(db, "-e", "fenrir_status_release_stale=true", "--check")
    i = lines.index("Would release (stale provisioning, now failed, address freed):")
    assert lines[i + 1:i + 3] == ["drifttest-r1", "drifttest-r2"]
    assert digest(db) == before and "changed=1" in proc.stdout

    proc, lines = status_playbook(db, "-e", "fenrir_status_release_stale=true")
    i = lines.index("Released (stale provisioning, now failed, address freed):")
    assert lines[i + 1:i + 3] == ["drifttest-r1", "drifttest-r2"]
    assert "changed=1" in proc.stdout
    assert any(line.startswith("Audit chain: intact (") for line in lines)
    assert {k: (v["status"], v["ip_int"] is None) for k, v in registry_rows(db).items()
            if k in ("drifttest-r1", "drifttest-r2", "drifttest-r3")} == {
        "drifttest-r1": ("failed", True), "drifttest-r2": ("failed", True), "drifttest-r3": ("provisioning", False)}

    proc, lines = status_playbook(db, "-e", "fenrir_status_release_stale=true")
    assert "changed=0" in proc.stdout and not [line for line in lines if line.startswith("Released")]


# --------------------------------------------------------------------------- audit playbook

def test_fleet_audit_module_and_audit_playbook(audit_registry, sql_edit):
    run([VENV_BIN / "ansible-playbook", "playbooks/audit.yml", "-e", "knarr_node_registry=%s" % audit_registry])
    sql_edit(audit_registry, "UPDATE nodes SET status = 'online' WHERE label = 'alpha'")
    proc = run([VENV_BIN / "ansible-playbook", "playbooks/audit.yml", "-e", "knarr_node_registry=%s" % audit_registry],
               check=False)
    assert proc.returncode == 2
    flat = " ".join(proc.stdout.split())
    assert "the audit chain of %s is broken: node 'alpha' differs from audit entry 1 in status" % audit_registry in flat
    proc = run([VENV_BIN / "ansible", "localhost", "-m", "fenrir.fleet.fleet_audit",
                "-a", "registry=%s fail_on_mismatch=false" % audit_registry])
    assert "ok: false" in proc.stdout and "label: alpha" in proc.stdout and "changed: false" in proc.stdout
