"""A fleet over two managed Docker hosts and the local engine (issue 12), end to end with ansible-playbook.

One module-scoped pair of stand-in hosts (scripts/standin-hosts: systemd + dockerd 20.10 + sshd in containers),
fenrir-fh-a/b at 172.30.0.31/32 on fenrir-hosts-test, first prepared by the docker_host role (playbooks/docker_hosts.yml:
TLS endpoints, and their records in the test's registry); local nodes on the test's own network fenrir-htest
(172.25.0.0/24), labels ht-*. The tests build on each other, in file order: placement by name and capacity (with
host-network nodes), cross-host echo, status, a move, prune, expansion, a rolling upgrade over every engine, a host
stopped mid-run, decommission per host and of the whole fleet, and of a Docker host. Everything is checked from
outside the collection: the hosts' own docker CLI (docker exec into the stand-in), the registry file, knarr's protocol.

Opt-in like test_docker_host.py (FENRIR_DOCKER_HOST_TESTS=1; make test sets it). Timings of every playbook run are
printed at the end of the module (pytest -s) and written to bench/results/fleet_hosts_timings.json.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import CLIENT, ROOT, VENV_BIN, node_group_lines, remove_leftovers, run_playbook

sys.path.insert(0, os.path.join(ROOT, "collections"))
from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_wire  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("FENRIR_DOCKER_HOST_TESTS") != "1",
                                reason="stand-in Docker host tests are opt-in: FENRIR_DOCKER_HOST_TESTS=1 (make test)")

A, B = "fenrir-fh-a", "fenrir-fh-b"
HOSTS = {A: "172.30.0.31", B: "172.30.0.32"}
NETWORK, SUBNET, PREFIX = "fenrir-htest", "172.25.0.0/24", "ht-"
STANDIN = os.path.join(ROOT, "scripts", "standin-hosts")
STANDIN_SCRIPT = os.path.join(ROOT, "images", "knarr-cluster-node", "knarr_standin.py")
TIMINGS = {}


def _run(argv, check=False, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=check, **kw)


class HostFleet:
    def __init__(self, work):
        self.work = work
        self.registry = os.path.join(work, "state", "fleet.db")
        self.pki = os.path.join(work, "pki")
        self.inventory = os.path.join(work, "inventory")
        self.standin = os.path.join(work, "standin")
        os.makedirs(os.path.join(self.inventory, "group_vars"))
        with open(os.path.join(self.inventory, "group_vars", "all.yml"), "w") as fh:
            fh.write("\n".join([
                "---",
                "knarr_node_registry: %s" % self.registry,
                "knarr_node_network: %s" % NETWORK,
                "knarr_node_subnet: %s" % SUBNET,
                "knarr_node_provisioner_endpoint: 172.25.0.1:9040",
                "knarr_node_boot_timeout: 30",
                "knarr_node_docker_tls_dir: %s/controller" % self.pki,
                "docker_host_registry: %s" % self.registry,
                "docker_host_ca_dir: %s" % self.pki, ""]))
        self.nodes = {}
        self.set_nodes({})

    def set_nodes(self, nodes):
        """nodes: {label: {var: value}} -- the knarr_nodes group (hosts host-<label>)."""
        self.nodes = nodes
        lines = ["---", "all:", "  hosts:", "    localhost:", "      ansible_connection: local",
                 "      ansible_python_interpreter: \"{{ ansible_playbook_python }}\"", "  children:",
                 "    docker_hosts:", "      vars:", "        ansible_user: root",
                 "        ansible_ssh_private_key_file: %s/id_ed25519" % self.standin,
                 "        ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                 "-o LogLevel=ERROR",
                 "        ansible_python_interpreter: /usr/bin/python3", "      hosts:"]
        for name, address in HOSTS.items():
            lines += ["        %s:" % name, "          ansible_host: %s" % address,
                      "          docker_host_bind_address: %s" % address]
        lines += node_group_lines(nodes)
        with open(os.path.join(self.inventory, "hosts.yml"), "w") as fh:
            fh.write("\n".join(lines) + "\n")

    def play(self, playbook, *args, name=None, env=None, check=True, inventory=None):
        started = time.monotonic()
        result = run_playbook(inventory or self.inventory, playbook, *args, env=env, check=check)
        TIMINGS.setdefault(name or playbook, []).append(round(time.monotonic() - started, 1))
        return result

    def _table(self, table, key):
        db = sqlite3.connect(self.registry)
        try:
            db.row_factory = sqlite3.Row
            return {r[key]: dict(r) for r in db.execute("SELECT * FROM %s" % table)}
        finally:
            db.close()

    def rows(self):
        return self._table("nodes", "label")

    def hosts(self):
        return self._table("hosts", "name")


def on_host(name, *argv, stdin=None):
    """A command in the stand-in host (its own docker CLI on its local socket: the collection is not involved)."""
    return subprocess.run(["docker", "exec", "-i", name] + list(argv), input=stdin, capture_output=True, text=True,
                          check=False)


def host_containers(name):
    """{label: inspect} of the test's node containers on a stand-in host's engine."""
    out = on_host(name, "docker", "ps", "-aq", "--filter", "label=fenrir.fleet.role=knarr-node").stdout.split()
    if not out:
        return {}
    data = json.loads(on_host(name, "docker", "inspect", *out).stdout)
    return {c["Config"]["Labels"]["fenrir.fleet.label"]: c for c in data
            if c["Config"]["Labels"].get("fenrir.fleet.label", "").startswith(PREFIX)}


def local_containers():
    out = {}
    for c in CLIENT.containers.list(all=True, filters={"label": "fenrir.fleet.role=knarr-node"}, ignore_removed=True):
        label = c.labels.get("fenrir.fleet.label", "")
        if label.startswith(PREFIX):
            out[label] = c.attrs
    return out


def echo(host, port, node_id, text="hello"):
    """The echo skill from the controller, in knarr's own protocol: signed, by the expected identity."""
    with knarr_wire.connect(host, port, timeout=10) as conn:
        reply = conn.call_skill("echo", {"text": text})
    assert reply["type"] == "TASK_RESULT" and knarr_wire.verify(reply), reply
    assert knarr_wire.signer_node_id(reply) == node_id, reply
    return reply["status"], reply["output_data"]["text"]


def cross_echo(standin, container, host, port, node_id, text):
    """The knarr client (the stand-in's echo subcommand, its own code) run inside a node's container on a host:
    from that node's network position, to a node elsewhere."""
    with open(STANDIN_SCRIPT) as fh:
        script = fh.read()
    proc = on_host(standin, "docker", "exec", "-i", container, "python3", "-", "echo", "--host", host, "--port",
                   str(port), "--node-id", node_id, "--text", text, stdin=script)
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("fleet-hosts"))
    f = HostFleet(work)
    env = dict(os.environ, FENRIR_STANDIN_DIR=f.standin)
    built = _run([os.path.join(ROOT, "scripts", "ensure-host-image")], timeout=900)
    assert built.returncode == 0, built.stderr[-2000:]
    remove_leftovers(PREFIX, NETWORK)
    started = time.monotonic()
    up = _run([STANDIN, "up"] + ["%s=%s" % kv for kv in HOSTS.items()], env=env, timeout=300)
    TIMINGS["standin-hosts up"] = [round(time.monotonic() - started, 1)]
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        f.play("docker_hosts.yml", name="docker_hosts.yml (prepare both hosts)")
        yield f
    finally:
        remove_leftovers(PREFIX, NETWORK)
        _run([STANDIN, "down"] + list(HOSTS), env=env, timeout=300)
        report = json.dumps(TIMINGS, indent=1, sort_keys=True)
        print("\nfleet-hosts timings (s):\n" + report)
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        with open(os.path.join(ROOT, "bench", "results", "fleet_hosts_timings.json"), "w") as fh:
            fh.write(report + "\n")


# The fleet of the first test: 1 local node, 4 nodes named onto their host (2 of them in host-network mode), and 3
# placed by capacity: fenrir-fh-a has 4 nodes (1 GiB declared) and fenrir-fh-b 1 (256 MiB), so all three go to b.
FLEET = {
    "ht-l1": {"knarr_node_docker_host": "local"},
    "ht-a1": {"knarr_node_docker_host": A},
    "ht-a2": {"knarr_node_docker_host": A},
    "ht-b1": {"knarr_node_docker_host": B},
    "ht-h1": {"knarr_node_docker_host": A, "knarr_node_network_mode": "host"},
    "ht-h2": {"knarr_node_docker_host": A, "knarr_node_network_mode": "host"},
    "ht-x1": {}, "ht-x2": {}, "ht-x3": {},
}
EXPECTED = {"ht-l1": None, "ht-a1": A, "ht-a2": A, "ht-h1": A, "ht-h2": A,
            "ht-b1": B, "ht-x1": B, "ht-x2": B, "ht-x3": B}


def _endpoint(row):
    return (HOSTS[row["docker_host"]], row["port"]) if row["docker_host"] else (row["ip"], 9010)


def test_hosts_are_registry_records_proven_by_the_controller(fleet):
    hosts = fleet.hosts()
    assert set(hosts) == {A, B}
    for name, h in hosts.items():
        assert h["status"] == "connected" and h["reason"] is None, h
        assert h["endpoint"] == "tcp://%s:2376" % HOSTS[name] and h["address"] == HOSTS[name]
        assert h["engine_version"].startswith("20.10.") and h["cert_fingerprint"].count(":") == 31
        assert h["cert_not_after"] > time.time() + 80 * 86400 and h["memory_bytes"] > 2 ** 30
        assert h["max_nodes"] == 100
    subnets = {h["subnet"] for h in hosts.values()}
    assert len(subnets) == 2 and "172.21.0.0/24" not in subnets and all(s.startswith("172.21.") for s in subnets)


def test_placement_by_name_and_capacity_host_network_and_image_copies(fleet):
    fleet.set_nodes(FLEET)
    result = fleet.play("provision.yml", name="provision 9 nodes over local + 2 hosts (image copied to both)")
    copied = result.task_result("holds the node images")["copied"]
    assert set(copied) == {A, B}, copied  # neither host had the image
    rows = fleet.rows()
    assert {label: rows[label]["docker_host"] for label in FLEET} == EXPECTED
    assert all(rows[label]["status"] == "online" for label in FLEET), {k: r["reason"] for k, r in rows.items()}
    hosts = fleet.hosts()
    import ipaddress
    for label, row in rows.items():
        if row["network_mode"] == "host":
            assert row["ip_int"] is None and row["ip"] == HOSTS[row["docker_host"]] and row["port"], row
        elif row["docker_host"]:
            assert ipaddress.ip_address(row["ip"]) in ipaddress.ip_network(hosts[row["docker_host"]]["subnet"]), row
            assert row["port"] is not None
        else:
            assert ipaddress.ip_address(row["ip"]) in ipaddress.ip_network(SUBNET) and row["port"] is None
    # Addresses are unique fleet-wide; ports per host too (host-network nodes hold a block of three).
    assert len({r["ip"] for r in rows.values() if r["ip_int"] is not None}) == 7
    for host in (A, B):
        ports = [r["port"] for r in rows.values() if r["docker_host"] == host]
        assert len(set(ports)) == len(ports) == 4
    h1, h2 = rows["ht-h1"]["port"], rows["ht-h2"]["port"]
    assert abs(h1 - h2) >= 3

    # Seen on each engine: the containers are where the registry says, nowhere else.
    on = {A: host_containers(A), B: host_containers(B)}
    assert set(on[A]) == {"ht-a1", "ht-a2", "ht-h1", "ht-h2"} and set(on[B]) == {"ht-b1", "ht-x1", "ht-x2", "ht-x3"}
    assert set(local_containers()) == {"ht-l1"}
    for host, containers in on.items():
        for label, c in containers.items():
            row = rows[label]
            assert c["Id"] == row["container_id"] and c["State"]["Running"]
            assert c["HostConfig"]["Memory"] == 256 * 2 ** 20 and c["HostConfig"]["PidsLimit"] == 50
            if row["network_mode"] == "host":
                assert c["HostConfig"]["NetworkMode"] == "host" and not c["HostConfig"]["PortBindings"]
            else:
                assert c["NetworkSettings"]["Networks"][NETWORK]["IPAddress"] == row["ip"]
                assert c["HostConfig"]["PortBindings"] == {
                    "%d/tcp" % row["port"]: [{"HostIp": HOSTS[host], "HostPort": str(row["port"])}]}
    listening = on_host(A, "ss", "-Hltn").stdout
    assert "%s:%d " % (HOSTS[A], h1) in listening and "%s:%d " % (HOSTS[A], h2) in listening
    image = CLIENT.images.get("knarr-cluster-node:latest").id
    for host in HOSTS:
        assert on_host(host, "docker", "image", "inspect", "-f", "{{.Id}}", "knarr-cluster-node:latest").stdout.strip() \
            == image

    # Every node answers its signed echo where it is advertised, as itself.
    for label, row in rows.items():
        assert echo(*_endpoint(row), node_id=row["node_id"], text=label) == ("completed", label)

    again = fleet.play("provision.yml", name="re-run, nothing to change (9 nodes, 3 engines)")
    assert again.changed() == 0, again.errors()


def test_nodes_on_different_hosts_reach_each_other(fleet):
    rows = fleet.rows()
    for standin, container, target in ((B, "fenrir-ht-b1", "ht-a1"), (B, "fenrir-ht-x1", "ht-h1"),
                                       (A, "fenrir-ht-a2", "ht-x2")):
        row = rows[target]
        rc, out, err = cross_echo(standin, container, HOSTS[row["docker_host"]], row["port"], row["node_id"],
                                  "from " + container)
        assert rc == 0, (out, err)
        answer = json.loads(out)
        assert answer["ok"] and answer["node_id"] == row["node_id"] and answer["output"] == {"text": "from " + container}
    # The client fails when the answer is not from the node it expects: the check above can fail.
    rc, out, dummy = cross_echo(B, "fenrir-ht-b1", HOSTS[A], rows["ht-a1"]["port"], rows["ht-a2"]["node_id"], "x")
    assert rc != 0 and json.loads(out)["ok"] is False


def test_status_shows_every_node_s_host_and_the_hosts(fleet):
    out = os.path.join(fleet.work, "status.json")
    result = fleet.play("status.yml", "-e", "fenrir_status_probe=true", "-e", "fenrir_status_json=%s" % out,
                        name="status.yml with probes")
    report = json.load(open(out))
    nodes = {n["label"]: n for n in report["nodes"]}
    assert {label: nodes[label]["docker_host"] for label in FLEET} == {k: v or "local" for k, v in EXPECTED.items()}
    assert all(n["drift"] == [] for n in nodes.values()), [(k, n["drift"], n["probe_error"]) for k, n in nodes.items()]
    hosts = {h["name"]: h for h in report["hosts"]}
    assert hosts[A]["nodes"] == 4 and hosts[B]["nodes"] == 4 and hosts[A]["engine"] == "answered"
    assert hosts[A]["status"] == "connected"
    table = "\n".join(result.task_result("Show the fleet")["msg"])
    assert "Docker hosts:" in table and A in table and "%s:%d" % (HOSTS[A], fleet.rows()["ht-h1"]["port"]) in table


def test_a_node_moved_to_another_host_keeps_its_id_and_data(fleet):
    before = fleet.rows()["ht-x3"]
    assert before["docker_host"] == B
    marker = ("import sqlite3; c = sqlite3.connect('/opt/knarr/node.db'); c.execute('CREATE TABLE IF NOT EXISTS "
              "marker (v)'); c.execute(\"INSERT INTO marker VALUES ('came along')\"); c.commit()")
    assert on_host(B, "docker", "exec", "fenrir-ht-x3", "python3", "-c", marker).returncode == 0
    fleet.set_nodes(dict(FLEET, **{"ht-x3": {"knarr_node_docker_host": A}}))
    planned = fleet.play("provision.yml", "--check", "--diff", name="move, --check")
    node = {n["label"]: n for n in planned.task_result("made and started")["nodes"]}["ht-x3"]
    assert "take node.db from %s" % B in node["actions"] and "remove from %s" % B in node["actions"], node
    assert fleet.rows()["ht-x3"] == before and "ht-x3" in host_containers(B)

    fleet.play("provision.yml", name="move one node between hosts")
    after = fleet.rows()["ht-x3"]
    assert after["docker_host"] == A and after["node_id"] == before["node_id"] and after["status"] == "online"
    import ipaddress
    assert ipaddress.ip_address(after["ip"]) in ipaddress.ip_network(fleet.hosts()[A]["subnet"])
    assert after["ip"] != before["ip"]
    assert "ht-x3" not in host_containers(B) and "ht-x3" in host_containers(A)
    read = "import sqlite3; print(sqlite3.connect('/opt/knarr/node.db').execute('SELECT v FROM marker').fetchall())"
    assert on_host(A, "docker", "exec", "fenrir-ht-x3", "python3", "-c", read).stdout.strip() == "[('came along',)]"
    assert echo(HOSTS[A], after["port"], after["node_id"]) == ("completed", "hello")
    assert fleet.play("provision.yml", name="re-run after the move").changed() == 0
    FLEET["ht-x3"] = {"knarr_node_docker_host": A}
    EXPECTED["ht-x3"] = A


def test_nodes_no_longer_in_the_inventory_are_reported_then_pruned(fleet):
    gone = dict(FLEET)
    del gone["ht-x1"]
    fleet.set_nodes(gone)
    out = os.path.join(fleet.work, "status-prune.json")
    fleet.play("status.yml", "-e", "fenrir_status_json=%s" % out, name="status.yml")
    nodes = {n["label"]: n for n in json.load(open(out))["nodes"]}
    assert nodes["ht-x1"]["drift"] == ["not in inventory"] and nodes["ht-x2"]["drift"] == []

    before = (fleet.rows(), set(host_containers(B)))
    plan = fleet.play("provision.yml", "-e", "fenrir_prune=true", "--check", "--diff", name="prune, --check")
    removal = plan.task_result("containers are removed")
    assert [n["label"] for n in removal["nodes"] if n["changed"]] == ["ht-x1"]
    assert (fleet.rows(), set(host_containers(B))) == before  # a dry run changes nothing

    fleet.play("provision.yml", "-e", "fenrir_prune=true", name="prune one node")
    rows = fleet.rows()
    assert rows["ht-x1"]["status"] == "destroyed" and rows["ht-x1"]["ip_int"] is None and rows["ht-x1"]["port"] is None
    assert "ht-x1" not in host_containers(B)
    assert all(rows[label]["status"] == "online" for label in gone)
    del FLEET["ht-x1"]


def test_expansion_on_a_second_host_costs_what_the_new_nodes_cost(fleet):
    seen = {A: host_containers(A), B: host_containers(B), "local": local_containers()}
    fleet.set_nodes(dict(FLEET, **{"ht-b2": {"knarr_node_docker_host": B}, "ht-b3": {"knarr_node_docker_host": B}}))
    result = fleet.play("provision.yml", name="expansion: +2 nodes on the second host")
    nodes = {n["label"]: n for n in result.task_result("made and started")["nodes"]}
    assert {label for label, n in nodes.items() if n["actions"]} == {"ht-b2", "ht-b3"}
    assert not result.task_result("holds the node images")["copied"]  # the image is there already
    now = {A: host_containers(A), B: host_containers(B), "local": local_containers()}
    for engine, containers in seen.items():
        for label, c in containers.items():
            assert now[engine][label]["Id"] == c["Id"] and now[engine][label]["State"]["StartedAt"] == \
                c["State"]["StartedAt"], label
    assert set(now[B]) - set(seen[B]) == {"ht-b2", "ht-b3"}
    FLEET.update({"ht-b2": {"knarr_node_docker_host": B}, "ht-b3": {"knarr_node_docker_host": B}})


VARIANT = "knarr-cluster-node:ht-variant"


def test_a_new_image_rolls_over_every_host_in_batches(fleet):
    """Rolling upgrade across hosts: every batch takes a node of each engine in turn, each batch proven before the
    next; the variant is copied to both hosts; identities stay; host-network nodes keep their ports."""
    import io
    CLIENT.images.build(fileobj=io.BytesIO(b"FROM knarr-cluster-node:latest\nLABEL fenrir.test.variant=ht\n"),
                        tag=VARIANT, rm=True, pull=False)
    variant_id = CLIENT.images.get(VARIANT).id
    before = fleet.rows()
    upgraded = {label: dict(hv, knarr_node_image=VARIANT) for label, hv in FLEET.items()}
    fleet.set_nodes(upgraded)
    result = fleet.play("provision.yml", "-e", '{"knarr_node_upgrade_batch": 3}', name="rolling upgrade over hosts")
    assert set(result.task_result("holds the node images")["copied"]) == {A, B}
    report = result.task_result("made and started")["upgrade"]
    labels = sorted(FLEET)
    assert report["failed_batch"] is None and sorted(report["upgraded"]) == labels, report
    assert report["batch_size"] == 3 and report["batches"] == -(-len(labels) // 3), report
    batches = {}
    for entry in report["plan"]:
        batches.setdefault(entry["batch"], []).append(entry)
        assert (entry["from_image"], entry["to_image"]) == ("knarr-cluster-node:latest", VARIANT), entry
    # One node of each engine in turn: the first batch spans the local engine and both hosts.
    assert len({e["docker_host"] for e in batches[1]}) == 3, batches[1]
    after = fleet.rows()
    for label in labels:
        row = after[label]
        assert row["status"] == "online" and row["node_id"] == before[label]["node_id"], row
        assert (row["image"], row["image_id"]) == (VARIANT, variant_id), row
        assert row["port"] == before[label]["port"] and row["docker_host"] == before[label]["docker_host"], row
    for host in (A, B):
        for label, c in host_containers(host).items():
            assert c["Image"] == variant_id, (host, label)
    assert all(c["Image"] == variant_id for c in local_containers().values())
    for label in ("ht-a1", "ht-h1"):
        row = after[label]
        assert echo(HOSTS[A], row["port"], row["node_id"]) == ("completed", "hello"), label
    assert fleet.play("provision.yml", name="re-run after the rolling upgrade").changed() == 0
    FLEET.clear()
    FLEET.update(upgraded)


def test_a_host_stopped_mid_run_fails_only_its_own_nodes(fleet):
    fleet.set_nodes(dict(FLEET, **{"ht-a3": {"knarr_node_docker_host": A}, "ht-b4": {"knarr_node_docker_host": B}}))
    once = os.path.join(fleet.work, "host-stopped")
    # Placement, images and networks are done for both hosts; then, right before the containers' engines are dialled,
    # fenrir-fh-b goes away (killed, as a power cut would).
    result = fleet.play("provision.yml", name="provision with one host killed mid-run", check=False,
                        env={"FENRIR_FAULT_POINT": "before_engines", "FENRIR_FAULT_COMMAND": "docker kill %s" % B,
                             "FENRIR_FAULT_ONCE": once})
    assert os.path.exists(once) and result.rc != 0
    rows = fleet.rows()
    on_b = [label for label, r in rows.items() if r["docker_host"] == B and r["status"] != "destroyed"]
    assert sorted(on_b) == ["ht-b1", "ht-b2", "ht-b3", "ht-b4", "ht-x2"]
    for label in on_b:
        assert rows[label]["status"] == "failed" and ("Docker host %r" % B) in rows[label]["reason"], rows[label]
    for label in ("ht-l1", "ht-a1", "ht-a2", "ht-a3", "ht-h1", "ht-h2", "ht-x3"):
        assert rows[label]["status"] == "online", rows[label]
    assert "ht-a3" in host_containers(A)
    errors = result.errors()
    for label in on_b:
        assert "node %s: Docker host %r" % (label, B) in errors, errors
    results = result.task_result("Result of every node")["knarr_node_results"]
    assert results["ht-b4"]["status"] == "error" and results["ht-a3"]["status"] == "ok"

    # The host comes back; the next run brings its nodes online (and makes the one it never got).
    assert _run(["docker", "start", B]).returncode == 0
    deadline = time.monotonic() + 120
    while on_host(B, "sh", "-c", "ss -Hltn 'sport = :2376' | grep -q 2376").returncode != 0:
        assert time.monotonic() < deadline, "dockerd on %s did not come back" % B
        time.sleep(1)
    fleet.play("provision.yml", name="re-run after the host came back")
    rows = fleet.rows()
    assert all(rows[label]["status"] == "online" for label in fleet.nodes)
    FLEET.update({"ht-a3": {"knarr_node_docker_host": A}, "ht-b4": {"knarr_node_docker_host": B}})


def test_decommission_per_host_whole_fleet_and_a_docker_host(fleet):
    # Per Docker host: the registry as an inventory groups nodes by host.
    registry_inventory = os.path.join(fleet.work, "registry.fleet.yml")
    with open(registry_inventory, "w") as fh:
        fh.write("plugin: fenrir.fleet.fleet\nregistry: %s\ncompose:\n  ansible_connection: \"'local'\"\n" % fleet.registry)
    extra = ["-e", "knarr_node_registry=%s" % fleet.registry, "-e", "knarr_node_docker_tls_dir=%s/controller" % fleet.pki,
             "-e", "ansible_python_interpreter=%s" % os.path.join(VENV_BIN, "python")]
    fleet.play("decommission.yml", "--limit", "fleet_docker_host_fenrir_fh_a", *extra, inventory=registry_inventory,
               name="decommission one host's nodes (registry inventory, --limit)")
    rows = fleet.rows()
    for label, row in rows.items():
        expect = "destroyed" if row["docker_host"] == A or label == "ht-x1" else "online"
        assert row["status"] == expect, (label, row["status"])
    assert host_containers(A) == {} and len(host_containers(B)) == 5 and set(local_containers()) == {"ht-l1"}

    # A Docker host with knarr nodes on it is not decommissioned; nothing changes.
    refused = fleet.play("docker_hosts.yml", "-e", "docker_host_state=absent", "--limit", B, check=False,
                         name="docker host decommission, refused")
    assert refused.rc != 0 and "knarr node 'ht-b1' lives on it" in refused.errors()
    assert fleet.hosts()[B]["status"] == "connected" and len(host_containers(B)) == 5

    # The whole fleet, over every engine at once.
    fleet.play("decommission.yml", name="decommission the whole fleet (local + host)")
    assert all(r["status"] == "destroyed" and r["ip_int"] is None for r in fleet.rows().values())
    assert host_containers(B) == {} and local_containers() == {}

    # A Docker host whose nodes the operator wants removed first.
    fleet.set_nodes({"ht-b9": {"knarr_node_docker_host": B}})
    fleet.play("provision.yml", name="provision 1 node")
    gone = fleet.play("docker_hosts.yml", "-e", "docker_host_state=absent", "-e", "docker_host_decommission_remove=true",
                      "--limit", B, name="docker host decommission, its node removed first")
    assert gone.rc == 0
    host = fleet.hosts()[B]
    assert host["status"] == "decommissioned" and fleet.rows()["ht-b9"]["status"] == "destroyed"
    assert host_containers(B) == {}
    assert on_host(B, "sh", "-c", "ss -Hltn 'sport = :2376'").stdout.strip() == ""
