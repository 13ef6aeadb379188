"""Drift between the fleet registry and Docker (module_utils/drift.py, fleet_status, playbooks/status.yml),
and the audit chain check (fleet_audit, playbooks/audit.yml).

The drift tests use the real Docker engine: a network ``drifttest-net`` and containers ``fenrir-drifttest-*``
(labelled ``drifttest=1``), all removed again by the fixture, even when a test fails. They are skipped only when
``docker info`` fails. Nothing else on the engine is touched; the real fleet is ignored because its containers
are labelled for another registry.
"""

import hashlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import drift
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import make_client
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import wait_until_alive
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry

REPO_ROOT = Path(__file__).resolve().parents[4]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
IMAGE = "knarr-cluster-node:latest"
NETWORK = "drifttest-net"
SUBNET, GATEWAY = "172.31.250.0/24", "172.31.250.1"
POOL = Pool(SUBNET, GATEWAY, "172.31.250.10", "172.31.250.20")
MARK = "drifttest"
PORT = 9010

# A minimal knarr node port: answers status with $NODE_ID and echoes the echo skill's input.
FAKE_NODE = r"""
import json, os, socketserver
NODE_ID = os.environ["NODE_ID"]
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            req = json.loads(line)
            if req.get("op") == "status":
                resp = {"ok": True, "node_id": NODE_ID}
            elif req.get("op") == "call" and req.get("skill") == "echo":
                resp = {"ok": True, "output": req.get("input")}
            else:
                resp = {"ok": False, "error": "unknown op"}
            self.wfile.write((json.dumps(resp) + "\n").encode())
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
Server(("0.0.0.0", %d), Handler).serve_forever()
""" % PORT
SLEEP = ["python3", "-c", "import time; time.sleep(1e6)"]


def node_id(char):
    return char * 64


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run(cmd, check=True):
    proc = subprocess.run([str(c) for c in cmd], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"))
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


# --------------------------------------------------------------------------- Docker fixture

def _docker_available():
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _cleanup(api):
    """Remove what this module creates: containers labelled drifttest=1 named fenrir-drifttest-*, the network."""
    for c in api.containers(all=True, filters={"label": "%s=1" % MARK}):
        if any(n.lstrip("/").startswith("fenrir-drifttest-") for n in c["Names"]):
            api.remove_container(c["Id"], force=True)
    for net in api.networks(names=[NETWORK]):
        if net["Name"] == NETWORK:
            api.remove_network(net["Id"])


def _container(api, label, ip, registry_path, command, env=None):
    name = "fenrir-%s" % label
    labels = {"fenrir.fleet.role": "knarr-node", "fenrir.fleet.label": label, "fenrir.fleet.server_id": name,
              "fenrir.fleet.registry": registry_path, MARK: "1"}
    created = api.create_container(
        image=IMAGE, name=name, command=command, labels=labels, environment=env or {},
        healthcheck={"test": ["NONE"]}, detach=True,
        host_config=api.create_host_config(network_mode=NETWORK),
        networking_config=api.create_networking_config({NETWORK: api.create_endpoint_config(ipv4_address=ip)}),
    )
    api.start(created["Id"])
    return created["Id"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A registry and containers showing every drift:

    ========  ==============  ========================================  =====================================
    node      registry        container                                 expected drift
    ========  ==============  ========================================  =====================================
    a         online          running at its address, answers           none
    b         online          stopped                                   stopped
    c         online          running at .30                            address differs
    d         online          none                                      container missing
    e         failed          none                                      status failed, container missing
    f         provisioning    running at its address, does not answer   status provisioning
    g         destroyed       running at its old address                (entry) not in registry
    h         online          running, not the recorded container,      container id differs
                              answers with another node id
    x         --              running, labelled for this registry       (entry) not in registry
    y         --              running, labelled for another registry    (ignored)
    ========  ==============  ========================================  =====================================
    """
    if not _docker_available():
        pytest.skip("docker info fails: no Docker engine to test against")
    docker = pytest.importorskip("docker")
    client = docker.from_env()
    api = client.api
    try:
        api.inspect_image(IMAGE)
    except docker.errors.ImageNotFound:
        client.close()
        pytest.skip("image %s is not present (scripts/ensure-node-image builds it; nothing is pulled)" % IMAGE)
    _cleanup(api)  # leftovers of an interrupted run
    tmp = tmp_path_factory.mktemp("drift")
    db = str(tmp / "fleet.db")
    try:
        api.create_network(NETWORK, driver="bridge", labels={MARK: "1"}, ipam=docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=SUBNET, gateway=GATEWAY)]))
        labels = ["drifttest-%s" % c for c in "abcdefgh"]
        with Registry(db, actor="drift-test") as reg:
            with reg.transaction():
                for label in labels:
                    reg.ensure(dict(label=label, location="test"), POOL)
            ip = {label: reg.get(label)["ip"] for label in labels}

        def server(label, nid, addr=None):
            return _container(api, label, addr or ip[label], db, ["python3", "-c", FAKE_NODE], env={"NODE_ID": nid})

        ids = dict(
            a=server("drifttest-a", node_id("a")),
            b=_container(api, "drifttest-b", ip["drifttest-b"], db, SLEEP),
            c=server("drifttest-c", node_id("c"), "172.31.250.30"),
        )
        api.stop(ids["b"], timeout=0)
        ids["f"] = _container(api, "drifttest-f", ip["drifttest-f"], db, SLEEP)
        ids["g"] = _container(api, "drifttest-g", ip["drifttest-g"], db, SLEEP)
        ids["h"] = server("drifttest-h", node_id("9"))
        ids["x"] = _container(api, "drifttest-x", "172.31.250.40", db, SLEEP)
        ids["y"] = _container(api, "drifttest-y", "172.31.250.41", str(tmp / "other" / "fleet.db"), SLEEP)
        with Registry(db, actor="drift-test") as reg:
            with reg.transaction():
                for char in "abcd":
                    reg.set_fields("drifttest-%s" % char, status="online", node_id=node_id(char),
                                   container_id=ids.get(char))
                reg.set_fields("drifttest-h", status="online", node_id=node_id("h"), container_id="0" * 64)
                reg.fail("drifttest-e", "test failure")
                reg.destroy("drifttest-g", reason="test")
        for addr in (ip["drifttest-a"], "172.31.250.30", ip["drifttest-h"]):
            wait_until_alive(addr, PORT, timeout=30)
        yield dict(db=db, ip=ip, ids=ids, api=api, tmp=tmp)
    finally:
        try:
            _cleanup(api)
        finally:
            client.close()


def status(fleet, **params):
    return drift.fleet_status(dict(db=fleet["db"], network=NETWORK, **params), make_client)


def by_label(result):
    out = {}
    for entry in result["nodes"]:
        assert entry["label"] not in out, "one entry per label expected"
        out[entry["label"]] = entry
    return out


# --------------------------------------------------------------------------- drift

def test_every_drift_is_reported(fleet):
    before = digest(fleet["db"])
    result = status(fleet)
    nodes = by_label(result)
    ip = fleet["ip"]

    assert [e["label"] for e in result["nodes"]] == [
        "drifttest-a", "drifttest-b", "drifttest-c", "drifttest-d", "drifttest-e", "drifttest-f", "drifttest-h",
        "drifttest-g", "drifttest-x"]
    a = nodes["drifttest-a"]
    assert a["drift"] == []
    assert (a["registry_status"], a["ip"], a["container_ip"], a["container_state"]) == (
        "online", ip["drifttest-a"], ip["drifttest-a"], "running")
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
    assert nodes["drifttest-f"]["drift"] == ["status provisioning"]
    assert nodes["drifttest-h"]["drift"] == ["container id differs"]

    g = nodes["drifttest-g"]  # destroyed in the registry, its container still there
    assert g["drift"] == ["not in registry"]
    assert g["registry_status"] is None and g["ip"] is None and g["container_state"] == "running"
    x = nodes["drifttest-x"]
    assert x["drift"] == ["not in registry"]
    assert (x["container_name"], x["container_ip"], x["server_id"]) == (
        "fenrir-drifttest-x", "172.31.250.40", "fenrir-drifttest-x")
    assert "drifttest-y" not in nodes  # another registry's container
    assert not [e for e in result["nodes"] if e["label"] in ("alpha", "beta", "gamma")]

    assert result["in_sync"] is False and result["changed"] is False
    assert result["db"] == fleet["db"] and result["network"] == NETWORK
    summary = result["summary"]
    assert summary == dict(
        nodes=7, containers=7, ok=1, drifted=8, status_provisioning=1, status_failed=1, container_missing=2,
        stopped=1, address_differs=1, container_id_differs=1, not_answering=0, wrong_identity=0,
        not_in_registry=2, duplicate_container=0)
    assert all(e["probe_error"] is None for e in result["nodes"])
    # Nothing changed: not the registry, not the containers.
    assert digest(fleet["db"]) == before
    assert fleet["api"].inspect_container("fenrir-drifttest-b")["State"]["Status"] == "exited"


def test_probe_adds_liveness_drift(fleet):
    nodes = by_label(status(fleet, probe=True, probe_timeout=1.0))
    assert nodes["drifttest-a"]["drift"] == []
    assert nodes["drifttest-a"]["probe_error"] is None
    assert nodes["drifttest-c"]["drift"] == ["address differs"]  # probed where it is: it answers
    assert nodes["drifttest-f"]["drift"] == ["status provisioning", "not answering"]
    assert nodes["drifttest-f"]["probe_error"]
    assert nodes["drifttest-h"]["drift"] == ["container id differs", "wrong identity"]
    assert node_id("9") in nodes["drifttest-h"]["probe_error"]
    assert nodes["drifttest-b"]["drift"] == ["stopped"]  # not running: not probed
    assert nodes["drifttest-x"]["drift"] == ["not in registry"]  # not a registry node: not probed


def test_in_sync_when_only_healthy_nodes(fleet, tmp_path):
    """A registry whose single node is container a's: in sync. Containers of the big registry are not its."""
    with Registry(fleet["db"], check_mode=True) as reg:
        nodes = [reg.get("drifttest-a")]
    containers = [drift.container_view(c, NETWORK) for c in fleet["api"].containers(
        all=True, filters={"label": "fenrir.fleet.role=knarr-node"})]
    entries = drift.compare(nodes, containers, fleet["db"])
    assert [e["drift"] for e in entries if e["label"] == "drifttest-a"] == [[]]
    entries = drift.compare(nodes, containers, str(tmp_path / "fleet.db"))
    assert [(e["label"], e["drift"]) for e in entries] == [("drifttest-a", ["container missing"])]


def test_fleet_status_module_and_status_playbook(fleet, tmp_path):
    proc = run([VENV_BIN / "ansible", "localhost", "--check", "-m", "fenrir.fleet.fleet_status",
                "-a", "db=%s network=%s" % (fleet["db"], NETWORK)])
    assert "changed: false" in proc.stdout and "in_sync: false" in proc.stdout

    out = tmp_path / "status.json"
    proc = run([VENV_BIN / "ansible-playbook", "playbooks/status.yml", "-e", "fenrir_registry=%s" % fleet["db"],
                "-e", "fenrir_network=%s" % NETWORK, "-e", "fenrir_status_json=%s" % out])
    lines = [line.strip(" -'\"") for line in proc.stdout.splitlines()]
    start = lines.index("Registry %s, network %s" % (fleet["db"], NETWORK))
    table = [line.split() for line in lines[start + 1:start + 13]]
    assert table[0] == ["LABEL", "IP", "REGISTRY", "CONTAINER", "DRIFT"]
    ip = fleet["ip"]
    assert table[1:] == [
        ["drifttest-a", ip["drifttest-a"], "online", "running", "in", "sync"],
        ["drifttest-b", ip["drifttest-b"], "online", "exited", "stopped"],
        ["drifttest-c", ip["drifttest-c"], "online", "running", "address", "differs", "(172.31.250.30)"],
        ["drifttest-d", ip["drifttest-d"], "online", "-", "container", "missing"],
        ["drifttest-e", ip["drifttest-e"], "failed", "-", "status", "failed"],
        ["container", "missing"],
        ["drifttest-f", ip["drifttest-f"], "provisioning", "running", "status", "provisioning"],
        ["drifttest-h", ip["drifttest-h"], "online", "running", "container", "id", "differs"],
        ["drifttest-g", "-", "-", "running", "not", "in", "registry", "(%s)" % ip["drifttest-g"]],
        ["drifttest-x", "-", "-", "running", "not", "in", "registry", "(172.31.250.40)"],
        ["7", "node(s):", "1", "in", "sync,", "8", "entries", "with", "drift."],
    ]  # (a row folded by the YAML result format would not parse like this)
    assert any(line.startswith("Audit chain: intact (") for line in lines)
    assert "changed=1" in proc.stdout  # the JSON file, asked for
    report = json.loads(out.read_text())
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert report["in_sync"] is False and report["audit"]["ok"] is True
    assert report["summary"]["container_missing"] == 2
    assert {e["label"]: e["drift"] for e in report["nodes"]}["drifttest-c"] == ["address differs"]


def test_unreadable_registry_is_a_clear_error(tmp_path):
    with pytest.raises(drift.DriftError, match="does not exist"):
        drift.fleet_status(dict(db=str(tmp_path / "none.db")), make_client)
    assert not (tmp_path / "none.db").exists()


# --------------------------------------------------------------------------- audit

@pytest.fixture
def registry(tmp_path):
    db = tmp_path / "fleet.db"
    with Registry(str(db), actor="audit-test") as reg:
        with reg.transaction():
            for label in ("alpha", "beta"):
                reg.ensure(dict(label=label, location="eu-north"), POOL)
            reg.set_fields("beta", status="online")
    return db


def edit(db, sql, *args):
    conn = sqlite3.connect(db)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def test_audit_intact(registry):
    before = digest(registry)
    result = drift.audit(str(registry))
    assert result == dict(ok=True, entries=3, problem=None, height=None, label=None, db=str(registry))
    assert digest(registry) == before


def test_audit_catches_an_edited_row(registry):
    edit(registry, "UPDATE nodes SET location = 'elsewhere' WHERE label = 'beta'")
    result = drift.audit(str(registry))
    assert result["ok"] is False and result["label"] == "beta" and result["height"] == 3
    assert "node 'beta' differs from audit entry 3 in location" in result["problem"]


def test_audit_catches_an_edited_entry(registry):
    edit(registry, "UPDATE audit SET actor = 'someone else' WHERE height = 2")
    result = drift.audit(str(registry))
    assert result["ok"] is False and result["height"] == 2
    assert "content does not match its hash" in result["problem"]


def test_audit_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(drift.DriftError, match="does not exist"):
        drift.audit(str(tmp_path / "fleet.db"))
    assert not (tmp_path / "fleet.db").exists()
    old = tmp_path / "old.db"
    edit(old, "CREATE TABLE fleet_nodes (label TEXT PRIMARY KEY, ip TEXT)")
    edit(old, "PRAGMA user_version = 1")
    with pytest.raises(drift.DriftError, match="schema version 1 .*original fleet-provision-docker-lite skill"):
        drift.audit(str(old))
    conn = sqlite3.connect(old)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()


def test_fleet_audit_module_and_audit_playbook(registry):
    run([VENV_BIN / "ansible-playbook", "playbooks/audit.yml", "-e", "fenrir_registry=%s" % registry])
    edit(registry, "UPDATE nodes SET status = 'online' WHERE label = 'alpha'")
    proc = run([VENV_BIN / "ansible-playbook", "playbooks/audit.yml", "-e", "fenrir_registry=%s" % registry],
               check=False)
    assert proc.returncode == 2
    flat = " ".join(proc.stdout.split())
    assert "the audit chain of %s is broken: node 'alpha' differs from audit entry 1 in status" % registry in flat
    proc = run([VENV_BIN / "ansible", "localhost", "-m", "fenrir.fleet.fleet_audit",
                "-a", "db=%s fail_on_mismatch=false" % registry])
    assert "ok: false" in proc.stdout and "label: alpha" in proc.stdout and "changed: false" in proc.stdout
