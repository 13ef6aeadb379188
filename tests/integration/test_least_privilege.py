"""Proof of life in knarr's own protocol, least-privileged nodes, identities that cannot fool the provisioner.

Against the real engine: nodes proven alive by a signed HEARTBEAT and echo signed with the provisioner's own
identity (the nodes see its node id as the caller, their [peer_overrides] name it); the cockpit on loopback with
the registry's token; every container without capabilities, as uid 10001, with no-new-privileges and bounded
logs -- seen by `docker inspect` and from inside (/proc/1/status); containers of an earlier version recreated
keeping node.db; a node.db replaced behind the registry's back reported with the identity the node showed, a
node answering with another key refused.
"""
import hashlib
import io
import json
import os
import sqlite3
import sys
import tarfile
import textwrap
import tomllib

from conftest import CLIENT, NETWORK, ROOT

sys.path.insert(0, os.path.join(ROOT, "collections"))
from ansible_collections.fenrir.fleet.plugins.module_utils import identity  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.container_files import make_tar  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_wire import Identity  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry  # noqa: E402

# An echo skill that also notes who called it (knarr hands the caller's node id to a handler as _caller_node_id).
RECORDING_ECHO = textwrap.dedent('''\
    async def handle(input_data: dict) -> dict:
        with open("/opt/knarr/callers.log", "a") as fh:
            fh.write("%s\\n" % input_data.get("_caller_node_id"))
        return {"text": input_data["text"]}
    ''')

STAGE_PLAYBOOK = """
- name: One stage of the knarr_node role
  hosts: knarr_nodes
  gather_facts: false
  tasks:
    - name: The stage
      ansible.builtin.include_role:
        name: fenrir.fleet.knarr_node
        tasks_from: "{{ stage }}.yml"
"""


def stage(fleet, name, check=True):
    path = os.path.join(fleet.dir, "stage.yml")
    with open(path, "w") as fh:
        fh.write(STAGE_PLAYBOOK)
    return fleet.play(path, "-e", "stage=%s" % name, check=check)


def nodes_of(result):
    return {n["label"]: n for n in result.task_result("made and started")["nodes"]}


def provisioner_of(fleet):
    with Registry(fleet.registry) as reg:
        return Identity(reg.provisioner_seed(create=False))


def secret_of(fleet, label, name):
    with Registry(fleet.registry) as reg:
        return reg.get_seed(label) if name == "seed" else reg.get_secret(label, name)


def sh(container, command, user=None):
    res = CLIENT.containers.get(container).exec_run(["sh", "-c", command], user=user or "")
    return res.exit_code, res.output.decode("utf-8", "replace")


def proc_status(container):
    code, out = sh(container, "cat /proc/1/status")
    assert code == 0, out
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


def read_from(container, path):
    stream, dummy = CLIENT.api.get_archive(container, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        return tar.extractfile(member).read()


def swap_identity(container, seed, keep_certificate):
    """Behind the registry's back: another node.db in the container, the node restarted on it."""
    c = CLIENT.containers.get(container)
    if not keep_certificate:
        assert sh(container, "rm -f /opt/knarr/cert.pem /opt/knarr/key.pem")[0] == 0
    c.stop(timeout=2)
    c.put_archive("/opt/knarr", make_tar({"/opt/knarr/node.db": (identity.build_node_db(seed), 0o600)}, "/opt/knarr"))
    c.start()


def test_nodes_are_proven_by_the_provisioner_identity_least_privileged_with_the_cockpit_on_loopback(fleet):
    fleet.set_hosts({"it-a": {"knarr_node_echo_source": RECORDING_ECHO, "knarr_node_cpus": 0.5},
                     "it-b": {"knarr_node_echo_source": RECORDING_ECHO, "knarr_node_read_only": True}})
    result = fleet.play("provision.yml")
    started = result.task_result("made and started")
    provisioner = provisioner_of(fleet)
    assert started["provisioner_node_id"] == provisioner.node_id
    rows = fleet.rows()
    for label in ("it-a", "it-b"):
        name = "fenrir-" + label
        assert rows[label]["status"] == "online"
        # The node saw the provisioner's identity as its caller, and its [peer_overrides] names that identity.
        callers = read_from(name, "/opt/knarr/callers.log").decode().split()
        assert callers and set(callers) == {provisioner.node_id}
        toml = read_from(name, "/opt/knarr/knarr.toml").decode()
        config = tomllib.loads(toml)
        assert config["peer_overrides"] == {provisioner.node_id[:16]: "172.24.0.1:9040"}

        # The cockpit: on, on loopback, with the registry's token (401 without it); never printed.
        token = secret_of(fleet, label, "cockpit_token")
        assert token and config["cockpit"] == dict(port=8080, bind="127.0.0.1", auth_token=token)
        assert token not in result.stdout + result.stderr
        probe = ("import json, ssl, sys, urllib.request as u; ctx = ssl._create_unverified_context()\n"
                 "req = u.Request('https://127.0.0.1:8080/api/status', headers=%s)\n"
                 "try:\n    print(json.loads(u.urlopen(req, context=ctx, timeout=5).read())['node_id'])\n"
                 "except u.HTTPError as e:\n    print(e.code)")
        code, out = CLIENT.containers.get(name).exec_run(
            ["python3", "-c", probe % json.dumps({"Authorization": "Bearer " + token})])
        assert code == 0 and out.decode().strip() == rows[label]["node_id"], out
        code, out = CLIENT.containers.get(name).exec_run(["python3", "-c", probe % "{}"])
        assert out.decode().strip() == "401", out
        code, out = sh(name, "cat /proc/net/tcp /proc/net/tcp6 | awk '$4 == \"0A\" {print $2}'")
        listening = set(out.split())
        assert "0100007F:1F90" in listening  # 127.0.0.1:8080
        assert not [a for a in listening if a.endswith(":1F90") and a != "0100007F:1F90"], listening

        # Least privilege, as Docker says...
        info = CLIENT.api.inspect_container(name)
        host = info["HostConfig"]
        assert info["Config"]["User"] == "10001:10001"
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"] and host["Privileged"] is False
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
        assert host["PortBindings"] in (None, {})
        # ... and as the node's process lives it.
        status = proc_status(name)
        assert status["Uid"].split() == ["10001"] * 4 and status["Gid"].split() == ["10001"] * 4
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[cap], 16) == 0, (cap, status[cap])
        assert status["NoNewPrivs"] == "1"
    assert CLIENT.api.inspect_container("fenrir-it-a")["HostConfig"]["NanoCpus"] == 500000000
    ro = CLIENT.api.inspect_container("fenrir-it-b")
    assert ro["HostConfig"]["ReadonlyRootfs"] is True
    assert [(m["Type"], m["Destination"]) for m in ro["Mounts"]] == [("volume", "/opt/knarr")]
    assert sh("fenrir-it-b", "touch /usr/x 2>&1")[0] != 0 and sh("fenrir-it-b", "touch /opt/knarr/x")[0] == 0
    assert sh("fenrir-it-a", "touch /usr/x 2>&1")[0] != 0  # not root: nothing outside its own directory

    # Nothing to change on a second run; decommission takes the read-only node's volume with it.
    assert fleet.play("provision.yml").changed() == 0
    volume = ro["Mounts"][0]["Name"]
    fleet.play("decommission.yml")
    assert not [v for v in CLIENT.volumes.list() if v.name == volume]


def _legacy_digest(image, memory, network):
    """The container digest of the version before the hardening (its container settings, nothing else)."""
    settings = dict(image=image, memory_bytes=memory, pids_limit=50, restart_policy="unless-stopped", network=network)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def test_containers_of_an_earlier_version_are_recreated_keeping_their_node_db(fleet):
    fleet.set_hosts({"it-old": {}})
    fleet.play("provision.yml")
    name = "fenrir-it-old"
    node_id = fleet.rows()["it-old"]["node_id"]
    old = CLIENT.api.inspect_container(name)
    CLIENT.api.stop(name, timeout=5)
    files = {p: read_from(name, p) for p in ("/opt/knarr/knarr.toml", "/opt/knarr/skills/echo.py")}
    db = str(os.path.join(fleet.dir, "node.db"))
    with open(db, "wb") as fh:
        fh.write(read_from(name, "/opt/knarr/node.db"))
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE IF NOT EXISTS peers_seen (node_id TEXT)")  # the node's own data, to be kept
    conn.execute("INSERT INTO peers_seen VALUES ('a-peer-it-met')")
    conn.commit()
    conn.close()
    with open(db, "rb") as fh:
        files["/opt/knarr/node.db"] = fh.read()
    CLIENT.api.remove_container(name, force=True)

    # The container as the version before made it: no user, capabilities, no-new-privileges or log bounds.
    labels = dict(old["Config"]["Labels"])
    labels["fenrir.fleet.spec"] = _legacy_digest("knarr-cluster-node:latest", 256 * 2 ** 20, NETWORK)
    host = CLIENT.api.create_host_config(mem_limit=256 * 2 ** 20, memswap_limit=256 * 2 ** 20, pids_limit=50,
                                         restart_policy={"Name": "unless-stopped"}, network_mode=NETWORK)
    networking = CLIENT.api.create_networking_config(
        {NETWORK: CLIENT.api.create_endpoint_config(ipv4_address=fleet.rows()["it-old"]["ip"])})
    legacy = CLIENT.api.create_container("knarr-cluster-node:latest", name=name, hostname=name, labels=labels,
                                         host_config=host, networking_config=networking, detach=True)["Id"]
    CLIENT.api.put_archive(name, "/", make_tar({p: (d, 0o600) for p, d in files.items()}))
    CLIENT.api.start(name)
    assert int(proc_status(name)["CapBnd"], 16) != 0  # the engine's default capabilities: not least-privileged

    result = fleet.play("provision.yml")
    node = nodes_of(result)["it-old"]
    assert node["actions"][0] == "keep node.db", node
    removed = node["actions"][1]
    # (User is not among them: an engine reports the image's USER, 10001:10001, for a container made without one.)
    for reason in ("cap_drop [] -> [ALL]", "security_opt [] -> [no-new-privileges]",
                   "log [json-file, None, None] -> [json-file, 10m, 3]", "label fenrir.fleet.spec"):
        assert reason in removed, removed
    info = CLIENT.api.inspect_container(name)
    assert info["Id"] != legacy and info["HostConfig"]["CapDrop"] == ["ALL"]
    assert int(proc_status(name)["CapEff"], 16) == 0 and int(proc_status(name)["CapBnd"], 16) == 0
    row = fleet.rows()["it-old"]
    assert row["node_id"] == node_id == node["node_id"] and row["status"] == "online"
    with open(db, "wb") as fh:
        fh.write(read_from(name, "/opt/knarr/node.db"))
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT node_id FROM peers_seen").fetchall() == [("a-peer-it-met",)]
    finally:
        conn.close()
    assert fleet.play("provision.yml").changed() == 0


def test_a_node_db_replaced_behind_the_registrys_back_is_reported_with_the_identity_it_showed(fleet):
    fleet.set_hosts({"it-a": {}})
    fleet.play("provision.yml")
    name = "fenrir-it-a"
    registered = fleet.rows()["it-a"]["node_id"]
    intruder = identity.new_seed()
    shown = identity.node_id_from_seed(intruder)
    swap_identity(name, intruder, keep_certificate=True)

    # wait-for-boot changes nothing and names the identity the node showed (and the certificate left of the other).
    booted = stage(fleet, "wait_for_boot", check=False)
    assert booted.rc != 0
    node = nodes_of(booted)["it-a"]
    assert node["failed"] and "wrong identity" in node["reason"] and shown in node["reason"], node
    assert registered in node["reason"]

    # The next provisioning run gives the node a new container with the registry's identity.
    fixed = fleet.play("provision.yml")
    node = nodes_of(fixed)["it-a"]
    assert node["actions"][0] == "remove (node.db holds node %s, the registry's is %s)" % (shown, registered), node
    assert "keep node.db" not in node["actions"]
    row = fleet.rows()["it-a"]
    assert row["status"] == "online" and row["node_id"] == registered
    assert identity.read_seed(read_from(name, "/opt/knarr/node.db")) == secret_of(fleet, "it-a", "seed")
    assert fleet.play("provision.yml").changed() == 0


def test_a_node_answering_with_another_key_is_refused(fleet):
    fleet.set_hosts({"it-a": {}})
    stage(fleet, "setup_docker")  # started, not waited for: recorded running
    assert fleet.rows()["it-a"]["status"] == "running"
    registered = fleet.rows()["it-a"]["node_id"]
    intruder = identity.new_seed()
    swap_identity("fenrir-it-a", intruder, keep_certificate=False)  # a consistent other identity, cert and all

    refused = stage(fleet, "register_fleet", check=False)
    assert refused.rc != 0
    node = nodes_of(refused)["it-a"]
    assert node["failed"] and node["reason"].endswith(
        "wrong identity: node %s answered, expected %s" % (identity.node_id_from_seed(intruder), registered)), node
    assert fleet.rows()["it-a"]["status"] == "running"  # never recorded online
