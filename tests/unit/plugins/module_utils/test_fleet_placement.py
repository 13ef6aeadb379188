"""fleet_placement.py and registry/placement.py: which host a node lives on, and what it holds there."""

import ipaddress
import os

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_placement
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry, RegistryError

GIB = 2 ** 30
MIB = 2 ** 20


def params(db, **kw):
    base = dict(registry=db, key_file=None, state="present", nodes=[], labels=None, absent=[], inventory=None,
                prune=False, tls_dir="/pki/controller", port_start=20000, port_end=29999, engine_timeout=60,
                identity=True, subnet="172.21.0.0/24", gateway=None, pool_start=None, pool_end=None)
    base.update(kw)
    return base


def node(label, **kw):
    return dict(dict(docker_host=None, network_mode="bridge", memory="256m", port=9010,
                     image="knarr-cluster-node:latest", ip=None, location=None, nonce=None, node_db_b64=None),
                label=label, **kw)


def add_host(db, name, address, status="connected", memory=4 * GIB, max_nodes=None):
    with Registry(db) as reg:
        reg.ensure_host(name, address=address, endpoint="tcp://%s:2376" % address, status=status,
                        memory_bytes=memory, max_nodes=max_nodes)


# --------------------------------------------------------------------------- choosing (no registry)

def req(label, host=None, memory=256 * MIB):
    return dict(label=label, docker_host=host, memory_bytes=memory)


HOSTS = {"a": dict(name="a", status="connected", memory_bytes=GIB, max_nodes=None),
         "b": dict(name="b", status="connected", memory_bytes=GIB, max_nodes=None)}


def test_named_local_sticky_and_capacity():
    records = {"old": dict(docker_host="b")}
    chosen = fleet_placement.choose_hosts(
        [req("n1", "a"), req("n2", "local"), req("old"), req("x1"), req("x2"), req("x3")], HOSTS, records)
    # a holds n1 (256 MiB), b holds old (256 MiB): x1 goes to a (tie on memory and count -> name), x2 to b, x3 to a.
    assert chosen == {"n1": "a", "n2": None, "old": "b", "x1": "a", "x2": "b", "x3": "a"}


def test_more_free_memory_wins_and_a_node_too_big_is_not_placed():
    hosts = {"small": dict(status="connected", memory_bytes=GIB, max_nodes=None),
             "big": dict(status="connected", memory_bytes=4 * GIB, max_nodes=None)}
    assert fleet_placement.choose_hosts([req("x", memory=512 * MIB)], hosts, {}) == {"x": "big"}
    with pytest.raises(FleetError, match="no connected Docker host has room"):
        fleet_placement.choose_hosts([req("huge", memory=8 * GIB)], hosts, {})


def test_node_limit_and_status():
    hosts = {"a": dict(status="connected", memory_bytes=GIB, max_nodes=1),
             "b": dict(status="disconnected", memory_bytes=8 * GIB, max_nodes=None)}
    assert fleet_placement.choose_hosts([req("x1")], hosts, {}) == {"x1": "a"}
    with pytest.raises(FleetError) as err:
        fleet_placement.choose_hosts([req("x1"), req("x2")], hosts, {})
    assert err.value.label == ["x2"] and "connected: a" in str(err.value)


def test_registry_nodes_outside_the_request_count_against_their_host():
    records = {"r%d" % i: dict(docker_host="a") for i in range(3)}
    assert fleet_placement.choose_hosts([req("x")], HOSTS, records) == {"x": "b"}


def test_without_hosts_everything_is_local_and_an_unknown_host_is_refused():
    assert fleet_placement.choose_hosts([req("x")], {}, {}) == {"x": None}
    with pytest.raises(FleetError, match="'nope' is not a Docker host of the fleet registry"):
        fleet_placement.choose_hosts([req("x", "nope")], HOSTS, {})


# --------------------------------------------------------------------------- the module, on a real registry

def test_no_hosts_places_nothing_and_writes_nothing(db):
    out = fleet_placement.run(params(db, nodes=[node("a")]))
    assert out["hosts_mode"] is False and out["nodes"] == [] and not os.path.exists(db)


def test_nodes_are_placed_with_addresses_ports_and_identities(loc):
    add_host(loc, "h1", "10.0.0.1")
    add_host(loc, "h2", "10.0.0.2", memory=8 * GIB)
    wanted = [node("l", docker_host="local"), node("a", docker_host="h1"), node("x"),
              node("h", docker_host="h1", network_mode="host"), node("k", docker_host="h1", network_mode="host")]
    out = fleet_placement.run(params(loc, nodes=wanted), diff=True)
    nodes = {n["label"]: n for n in out["nodes"]}
    assert out["hosts_mode"] and out["changed"]
    with Registry(loc) as reg:
        hosts = {h["name"]: h for h in reg.hosts()}
    assert nodes["l"]["docker_host"] is None and nodes["l"]["ip"] == "172.21.0.10" and nodes["l"]["port"] is None
    assert nodes["a"]["docker_host"] == "h1" and nodes["x"]["docker_host"] == "h2"
    assert ipaddress.ip_address(nodes["a"]["ip"]) in ipaddress.ip_network(hosts["h1"]["subnet"])
    assert nodes["a"]["port"] == 20000 and nodes["a"]["advertise"] == "10.0.0.1:20000"
    assert nodes["h"]["ip"] == "10.0.0.1" and nodes["h"]["address_held"] is False
    assert {nodes["h"]["port"], nodes["k"]["port"]} == {20003, 20006}
    assert all(n["node_id"] and n["has_identity"] for n in nodes.values())
    engines = {e["name"]: e for e in out["engines"]}
    assert set(engines) == {"local", "h1", "h2"}
    assert engines["h1"]["docker_host"] == "tcp://10.0.0.1:2376" and engines["h1"]["ca_path"] == "/pki/controller/ca.pem"
    assert sorted(engines["h1"]["nodes"]) == ["a", "h", "k"] and engines["h1"]["images"] == ["knarr-cluster-node:latest"]
    again = fleet_placement.run(params(loc, nodes=wanted))
    assert not again["changed"] and again["nodes"] == out["nodes"]


def test_placement_is_sticky_and_a_named_host_moves_the_node(loc):
    add_host(loc, "h1", "10.0.0.1")
    first = {n["label"]: n for n in fleet_placement.run(params(loc, nodes=[node("x")]))["nodes"]}
    add_host(loc, "h2", "10.0.0.2", memory=64 * GIB)  # roomier now: x stays where it is
    kept = {n["label"]: n for n in fleet_placement.run(params(loc, nodes=[node("x")]))["nodes"]}
    assert kept["x"]["docker_host"] == "h1" and kept["x"]["ip"] == first["x"]["ip"]
    with Registry(loc) as reg:
        with reg.transaction():
            reg.set_fields("x", container_id="c1", status="online")
    moved = fleet_placement.run(params(loc, nodes=[node("x", docker_host="h2")]))
    assert moved["moves"] == {"x": {"from": "h1", "to": "h2"}}
    after = moved["nodes"][0]
    assert after["docker_host"] == "h2" and after["node_id"] == first["x"]["node_id"]
    assert after["ip"] != first["x"]["ip"] and after["container_id"] is None and after["status"] == "provisioning"
    assert {e["name"] for e in moved["engines"]} == {"h1", "h2"}  # the old host too: the node's data is there
    with Registry(loc) as reg:
        assert reg.previous_placement("x") == dict(docker_host="h1", container_id="c1", network_mode="bridge")
        assert reg.holder_of(int(ipaddress.ip_address(first["x"]["ip"]))) is None  # the old address is free
        with reg.transaction():
            reg.set_fields("x", container_id="c2", status="online")
        assert reg.previous_placement("x") is None  # the move is finished


def test_check_mode_plans_and_writes_nothing(loc):
    add_host(loc, "h1", "10.0.0.1")
    with Registry(loc) as reg:
        head = reg.audit_head()
    out = fleet_placement.run(params(loc, nodes=[node("a")]), check_mode=True)
    assert out["nodes"][0]["docker_host"] == "h1" and out["nodes"][0]["port"] == 20000
    with Registry(loc) as reg:
        assert reg.get("a") is None and reg.audit_head() == head


def test_host_network_needs_a_managed_host_and_no_pinned_address(loc):
    add_host(loc, "h1", "10.0.0.1")
    with pytest.raises(ModuleFailure, match="host network mode needs a managed Docker host"):
        fleet_placement.run(params(loc, nodes=[node("a", docker_host="local", network_mode="host")]))
    with pytest.raises(ModuleFailure, match="has no address of its own"):
        fleet_placement.run(params(loc, nodes=[node("a", docker_host="h1", network_mode="host", ip="10.0.0.5")]))


def test_a_port_pool_runs_out(loc):
    add_host(loc, "h1", "10.0.0.1")
    fleet_placement.run(params(loc, nodes=[node("a", docker_host="h1")], port_start=30000, port_end=30002))
    with pytest.raises(ModuleFailure, match="no free port 30000-30002"):
        fleet_placement.run(params(loc, nodes=[node("b", docker_host="h1")], port_start=30000, port_end=30002))


def test_not_in_inventory_and_prune(loc):
    add_host(loc, "h1", "10.0.0.1")
    fleet_placement.run(params(loc, nodes=[node("a"), node("b")]))
    out = fleet_placement.run(params(loc, nodes=[node("a")], inventory=["a"]))
    assert out["not_in_inventory"] == ["b"] and out["prune"] == []
    pruned = fleet_placement.run(params(loc, nodes=[node("a")], inventory=["a"], prune=True))
    assert pruned["prune"] == ["b"] and "h1" in {e["name"] for e in pruned["engines"]}


def test_query_reads_where_nodes_live_without_the_key(loc):
    add_host(loc, "h1", "10.0.0.1")
    fleet_placement.run(params(loc, nodes=[node("a"), node("l", docker_host="local")]))
    out = fleet_placement.run(params(loc, state="query", labels=["a"]))
    assert out["hosts_mode"] and [n["label"] for n in out["nodes"]] == ["a"]
    assert [e["name"] for e in out["engines"]] == ["h1"] and out["nodes"][0]["advertise"] == "10.0.0.1:20000"
    everything = fleet_placement.run(params(loc, state="query"))
    assert {e["name"] for e in everything["engines"]} == {"local", "h1"}


def test_a_host_without_endpoint_is_an_engine_with_a_problem(loc):
    with Registry(loc) as reg:
        reg.ensure_host("pending-host", status="connected")
    out = fleet_placement.run(params(loc, nodes=[node("a")]))
    engine = out["engines"][0]
    assert engine["name"] == "pending-host" and "has no Docker endpoint" in engine["problem"]


# --------------------------------------------------------------------------- the registry's own rules

def test_a_host_network_record_is_live_without_an_address(db):
    with Registry(db) as reg:
        reg.ensure_host("h1", address="10.0.0.1")
        with reg.transaction():
            reg.place(dict(label="n"), None, docker_host="h1", network_mode="host", ports=(20000, 20010, 3),
                      host_address="10.0.0.1")
            reg.set_fields("n", status="online")
            assert reg.get("n")["status"] == "online" and reg.get("n")["port"] == 20000
            reg.destroy("n")
            assert reg.get("n")["port"] is None
            with pytest.raises(RegistryError, match="holds no address"):
                reg.set_fields("n", status="online")


def test_place_refuses_a_pinned_address_another_node_holds(db):
    with Registry(db) as reg:
        with reg.transaction():
            reg.place(dict(label="a", ip="172.21.0.50"), Pool())
            with pytest.raises(RegistryError, match="already held by node 'a'"):
                reg.place(dict(label="b", ip="172.21.0.50"), Pool())
