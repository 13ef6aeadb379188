"""A fleet made by the original fleet-provision-docker-lite skill, taken over by the collection.

The skill's fleet.db (table fleet_nodes, plain-text secrets) and a node container made its way (docker
create with --ip and limits, the three files copied in, no labels): provision.yml adopts the record,
keeps the node's address and identity, and brings the container under management without losing
what the node wrote to its node.db.
"""
import io
import sqlite3
import tarfile
import time

from conftest import CLIENT, ORIGINAL_IP as IP, original_node, original_registry
from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident


def _write_ledger(container_id, tmp_path):
    bits, dummy = CLIENT.api.get_archive(container_id, "/opt/knarr/node.db")
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
        member = tar.getmembers()[0]
        data = tar.extractfile(member).read()
    path = tmp_path / "node.db"
    path.write_bytes(data)
    db = sqlite3.connect(str(path))
    db.execute("CREATE TABLE ledger (entry TEXT)")
    db.execute("INSERT INTO ledger VALUES ('e1')")
    db.commit()
    db.close()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("node.db")
        info.size, info.mode, info.uid, info.gid = path.stat().st_size, member.mode, member.uid, member.gid
        tar.addfile(info, io.BytesIO(path.read_bytes()))
    assert CLIENT.api.put_archive(container_id, "/opt/knarr", buf.getvalue())


def test_an_original_fleet_is_adopted_without_losing_the_nodes_identity(fleet, tmp_path):
    seed = ident.new_seed()
    node_id = ident.node_id_from_seed(seed)
    original_registry(fleet.registry, "INSERT INTO fleet_nodes VALUES ('it-o', 'fenrir-it-o', 'docker', 'lab', ?, ?, "
                      "'PLAINKEY-x1', 'PLAINSEED-x1', 'n1', 'online', ?, ?, ?)",
                      (IP, node_id, time.time(), time.time(), time.time()))
    old_id = original_node(seed)
    # The node's own data in its node.db (root's, 0600, as the original skill's `docker cp` left it). Written
    # through the container's archive, not `docker exec`: a node that cannot read its node.db restarts, and an
    # exec in a restarting container is killed.
    _write_ledger(old_id, tmp_path)

    fleet.set_hosts({"it-o": {"knarr_node_location": "lab"}, "it-n": {}})
    before = fleet.snapshot()
    fleet.play("provision.yml", "--check", "--diff")
    assert fleet.snapshot()["containers"] == before["containers"]

    result = fleet.play("provision.yml")
    rows = fleet.rows()
    assert rows["it-o"]["ip"] == IP and rows["it-o"]["node_id"] == node_id and rows["it-o"]["status"] == "online"
    assert rows["it-n"]["ip"] == "172.24.0.10"  # a new node does not take the adopted address
    node = {n["label"]: n for n in result.task_result("made and started")["nodes"]}["it-o"]
    assert node["node_id"] == node_id and "keep node.db" in node["actions"], node  # recreated with its labels
    new = CLIENT.containers.get("fenrir-it-o")
    assert new.id != old_id and new.labels["fenrir.fleet.label"] == "it-o"
    read = "import sqlite3; print(sqlite3.connect('/opt/knarr/node.db').execute('SELECT entry FROM ledger').fetchall())"
    assert new.exec_run(["python3", "-c", read]).output.decode().strip() == "[('e1',)]"
    with open(fleet.registry, "rb") as fh:
        assert b"PLAINSEED-x1" not in fh.read()
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry
    with Registry(fleet.registry, check_mode=True) as reg:
        assert reg.get_seed("it-o") == seed  # the identity came from the container and is kept, encrypted
    assert fleet.play("provision.yml").changed() == 0


def test_an_adopted_node_without_its_identity_is_refused_not_replaced(fleet):
    node_id = ident.node_id_from_seed(ident.new_seed())
    original_registry(fleet.registry, "INSERT INTO fleet_nodes (label, server_id, provider, ip, node_id, status, "
                      "created_at) VALUES ('it-o', 'fenrir-it-o', 'docker', ?, ?, 'online', 1.0)", (IP, node_id))
    fleet.set_hosts({"it-o": {}})
    result = fleet.play("provision.yml", check=False)
    assert result.rc != 0
    assert "node 'it-o', field 'identity'" in result.errors() and node_id in result.errors(), result.errors()
    assert fleet.rows()["it-o"]["node_id"] == node_id and "it-o" not in fleet.containers()
