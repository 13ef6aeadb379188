"""Provisioning end to end: check mode changes nothing, a second run changes nothing, growth adds only the new."""
import json
import os
import subprocess
import sys

from conftest import CLIENT, ROOT, VENV_BIN

sys.path.insert(0, os.path.join(ROOT, "collections"))
from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_wire  # noqa: E402


def _echo(ip, port=9010):
    """The echo skill, called in knarr's own protocol (TLS, signed); returns (status, output) if signed."""
    with knarr_wire.connect(ip, port, timeout=5) as conn:
        reply = conn.call_skill("echo", {"text": "hello"})
    assert reply["type"] == "TASK_RESULT" and knarr_wire.verify(reply), reply
    return reply["status"], reply["output_data"]


def test_check_mode_on_nothing_creates_nothing(fleet):
    fleet.set_hosts({"it-a": {}, "it-b": {}})
    result = fleet.play("provision.yml", "--check", "--diff")
    assert result.changed() > 0  # it reports what it would do
    planned = result.task_result("made and started")
    assert sorted(n["ip"] for n in planned["nodes"]) == ["172.24.0.10", "172.24.0.11"]
    assert all(n["result"]["status"] == "dry_run" for n in planned["nodes"])
    assert fleet.containers() == {}
    assert not fleet.network_exists()
    assert not fleet.registry.startswith("/nonexistent") and fleet.rows() == {}
    assert not os.path.exists(fleet.registry)


def test_provision_idempotence_check_mode_and_expansion(fleet):
    fleet.set_hosts({"it-a": {"knarr_node_location": "x"}, "it-b": {}, "it-c": {"knarr_node_ip": "172.24.0.200"}})
    fleet.play("provision.yml")
    before = fleet.snapshot()
    rows = fleet.rows()
    assert {k: v["ip"] for k, v in rows.items()} == {"it-a": "172.24.0.10", "it-b": "172.24.0.11",
                                                     "it-c": "172.24.0.200"}
    assert all(r["status"] == "online" for r in rows.values())
    assert {k: c["ip"] for k, c in before["containers"].items()} == {k: r["ip"] for k, r in rows.items()}
    for row in rows.values():
        assert _echo(row["ip"]) == ("completed", {"text": "hello"})

    # A second run changes nothing.
    again = fleet.play("provision.yml")
    assert again.changed() == 0, again.errors()

    # Check mode leaves Docker and the registry exactly as they were.
    fleet.play("provision.yml", "--check", "--diff")
    assert fleet.snapshot() == before

    # Growth: two more hosts; only they are provisioned, the others keep address and container.
    fleet.set_hosts(dict(fleet.hosts, **{"it-d": {}, "it-e": {}}))
    grown = fleet.play("provision.yml")
    nodes = {n["label"]: n for n in grown.task_result("made and started")["nodes"]}
    assert {k for k, n in nodes.items() if n["changed"]} == {"it-d", "it-e"}
    after = fleet.containers()
    for label in ("it-a", "it-b", "it-c"):
        assert after[label] == before["containers"][label]
    assert after["it-d"]["ip"] == "172.24.0.12" and after["it-e"]["ip"] == "172.24.0.13"
    assert fleet.play("provision.yml").changed() == 0


def test_drift_is_repaired(fleet):
    fleet.set_hosts({"it-a": {}})
    fleet.play("provision.yml")
    container = CLIENT.containers.get("fenrir-it-a")
    container.exec_run(["sh", "-c", "echo '# edited' >> /opt/knarr/knarr.toml"])
    container.stop(timeout=2)
    result = fleet.play("provision.yml")
    node = result.task_result("made and started")["nodes"][0]
    assert "put knarr.toml" in node["actions"] and "start" in node["actions"], node
    assert fleet.rows()["it-a"]["status"] == "online"
    assert fleet.play("provision.yml").changed() == 0


def test_decommission_frees_addresses_and_leaves_nothing(fleet):
    fleet.set_hosts({"it-a": {}, "it-b": {}})
    fleet.play("provision.yml")
    fleet.play("decommission.yml", "--limit", "host-it-a")
    rows = fleet.rows()
    assert rows["it-a"]["status"] == "destroyed" and rows["it-a"]["ip_int"] is None
    assert rows["it-b"]["status"] == "online"
    assert set(fleet.containers()) == {"it-b"}
    # The freed address goes to the next new node.
    fleet.set_hosts({"it-b": {}, "it-f": {}})
    fleet.play("provision.yml")
    assert fleet.rows()["it-f"]["ip"] == "172.24.0.10"
    fleet.play("decommission.yml")
    assert fleet.containers() == {}
    assert all(r["status"] == "destroyed" for r in fleet.rows().values())


def test_each_host_keeps_its_own_settings_and_state(fleet):
    """A setting on the first host does not leak to the others; knarr_node_state is per host."""
    cli = CLIENT
    fleet.set_hosts({"it-a": {"knarr_node_ip": "172.24.0.200", "knarr_node_memory": "128m"}, "it-b": {}, "it-c": {}})
    fleet.play("provision.yml")
    rows = fleet.rows()
    assert {k: v["ip"] for k, v in rows.items()} == {"it-a": "172.24.0.200", "it-b": "172.24.0.10",
                                                     "it-c": "172.24.0.11"}
    memory = {label: cli.containers.get("fenrir-" + label).attrs["HostConfig"]["Memory"] for label in rows}
    assert memory == {"it-a": 128 * 2 ** 20, "it-b": 256 * 2 ** 20, "it-c": 256 * 2 ** 20}
    before = fleet.containers()

    # it-b leaves, it-d joins, in one run: the leaving node is removed first, so its address is free.
    fleet.set_hosts({"it-a": fleet.hosts["it-a"], "it-b": {"knarr_node_state": "absent"}, "it-c": {}, "it-d": {}})
    result = fleet.play("provision.yml")
    rows = fleet.rows()
    assert rows["it-b"]["status"] == "destroyed" and rows["it-b"]["ip_int"] is None
    assert rows["it-d"]["ip"] == "172.24.0.10" and rows["it-d"]["status"] == "online"
    after = fleet.containers()
    assert set(after) == {"it-a", "it-c", "it-d"}
    assert after["it-a"] == before["it-a"] and after["it-c"] == before["it-c"]
    results = result.task_result("Result of every node")["knarr_node_results"]
    assert results["it-b"] == {"status": "ok", "ip": "172.24.0.10", "server_id": "fenrir-it-b", "provider": "docker"}
    assert results["it-d"]["status"] == "ok" and set(results) == {"it-a", "it-b", "it-c", "it-d"}
    assert fleet.play("provision.yml").changed() == 0

    # The registry is the inventory: the provisioned fleet, addresses as ansible_host, groups by status.
    inventory = _registry_inventory(fleet, "keyed_groups:\n  - key: fleet_provider\n    prefix: via\n")
    graph = subprocess.run([os.path.join(VENV_BIN, "ansible-inventory"), "-i", inventory, "--graph"],
                           cwd=ROOT, env=_env(), capture_output=True, text=True, check=True).stdout
    assert "@fleet_status_online:" in graph and "@via_docker:" in graph
    for label in ("it-a", "it-c", "it-d"):
        assert "|--%s" % label in graph.replace(" ", ""), graph
    assert "it-b" not in graph  # destroyed: listed only with include_destroyed
    listed = json.loads(subprocess.run([os.path.join(VENV_BIN, "ansible-inventory"), "-i", inventory, "--list"],
                                       cwd=ROOT, env=_env(), capture_output=True, text=True, check=True).stdout)
    hostvars = listed["_meta"]["hostvars"]
    assert {h: _text(v["ansible_host"]) for h, v in hostvars.items()} == \
        {k: v["ip"] for k, v in rows.items() if k != "it-b"}
    assert _text(hostvars["it-d"]["fleet_node_id"]) == rows["it-d"]["node_id"]


def _text(value):
    """ansible-inventory --list marks registry values as untrusted data: {"__ansible_unsafe": text}."""
    return value["__ansible_unsafe"] if isinstance(value, dict) else value


def _env():
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))


def _registry_inventory(fleet, extra=""):
    path = os.path.join(fleet.dir, "registry.fleet.yml")
    with open(path, "w") as fh:
        fh.write("plugin: fenrir.fleet.fleet\nregistry: %s\n%s" % (fleet.registry, extra))
    return path


def test_a_recreated_node_keeps_its_node_db(fleet):
    """A change that recreates the container (here the memory limit) keeps what the node wrote to node.db."""
    cli = CLIENT
    fleet.set_hosts({"it-a": {}})
    fleet.play("provision.yml")
    old = cli.containers.get("fenrir-it-a")
    write = ("import sqlite3; c = sqlite3.connect('/opt/knarr/node.db'); "
             "c.execute('CREATE TABLE peers (id TEXT)'); c.execute(\"INSERT INTO peers VALUES ('p1')\"); c.commit()")
    assert old.exec_run(["python3", "-c", write]).exit_code == 0

    fleet.set_hosts({"it-a": {"knarr_node_memory": "128m"}})
    result = fleet.play("provision.yml")
    node = result.task_result("made and started")["nodes"][0]
    assert "keep node.db" in node["actions"] and any(a.startswith("remove (memory") for a in node["actions"]), node
    new = cli.containers.get("fenrir-it-a")
    assert new.id != old.id and new.attrs["HostConfig"]["Memory"] == 128 * 2 ** 20
    read = "import sqlite3; print(sqlite3.connect('/opt/knarr/node.db').execute('SELECT id FROM peers').fetchall())"
    assert new.exec_run(["python3", "-c", read]).output.decode().strip() == "[('p1',)]"
    assert fleet.rows()["it-a"]["container_id"] == new.id and fleet.rows()["it-a"]["status"] == "online"
    assert fleet.play("provision.yml").changed() == 0
