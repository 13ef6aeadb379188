"""network.py: the fleet network's subnet and gateway, what clashes with it, and what is refused.

No Docker: a small hand-written fake of the APIClient calls ensure_network makes.  Like the engine
(API >= 1.28), ``networks()`` lists networks without their attached containers; ``inspect_network``
has them.
"""

import copy

import pytest
from docker.errors import APIError, NotFound

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_network as nw
from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_network import NetworkError, ensure_network


def net(name, subnet=None, gateway=None, driver="bridge", containers=None, ident=None):
    config = [dict(Subnet=subnet, Gateway=gateway)] if subnet else []
    return dict(Name=name, Id=ident or "id-" + name, Driver=driver, IPAM=dict(Driver="default", Config=config),
                Containers=dict(containers or {}))


class FakeApi:
    def __init__(self, networks=(), images=("knarr-cluster-node:latest",), containers=(), list_ipam=True):
        self.nets = {n["Id"]: n for n in networks}
        self.images = set(images)
        self.containers = set(containers)
        self.list_ipam = list_ipam
        self.created = []
        self.removed = []

    def networks(self):
        out = []
        for n in self.nets.values():
            n = copy.deepcopy(n)
            n["Containers"] = {}  # the list endpoint does not propagate attached containers
            if not self.list_ipam:
                n["IPAM"] = dict(Driver="default", Config=None)
            out.append(n)
        return out

    def inspect_network(self, ident):
        if ident not in self.nets:
            raise NotFound("network %s not found" % ident)
        return copy.deepcopy(self.nets[ident])

    def inspect_image(self, image):
        if image not in self.images:
            raise NotFound("no such image")
        return {"Id": "sha256:x"}

    def inspect_container(self, cid):
        if cid not in self.containers:
            raise NotFound("no such container")
        return {"Id": cid}

    def create_network(self, name, driver=None, ipam=None, labels=None, check_duplicate=None):
        self.created.append(dict(name=name, driver=driver, ipam=ipam, labels=labels, check_duplicate=check_duplicate))
        self.nets["new-id"] = net(name, ipam["Config"][0]["Subnet"], ipam["Config"][0]["Gateway"], driver,
                                  ident="new-id")
        return {"Id": "new-id"}

    def remove_network(self, ident):
        self.removed.append(ident)
        del self.nets[ident]


def params(**kw):
    out = dict(name="fenrir-fleet", subnet="172.21.0.0/24", gateway="172.21.0.1", driver="bridge",
               labels=None, state="present")
    out.update(kw)
    return out


BRIDGE = net("bridge", "172.17.0.0/16", "172.17.0.1")


# --------------------------------------------------------------------------- subnet and gateway


def test_subnet_with_host_bits_is_refused_naming_the_field():
    with pytest.raises(NetworkError) as err:
        ensure_network(FakeApi(), params(subnet="172.21.0.5/24"), False)
    assert "network fenrir-fleet, field 'subnet'" in str(err.value)


def test_ipv6_or_garbage_subnet_is_refused_naming_the_field():
    for bad in ("fd00::/64", "not-a-subnet"):
        with pytest.raises(NetworkError, match="field 'subnet'"):
            ensure_network(FakeApi(), params(subnet=bad), False)


def test_gateway_outside_the_subnet_is_refused():
    with pytest.raises(NetworkError) as err:
        ensure_network(FakeApi(), params(gateway="172.22.0.1"), False)
    assert str(err.value) == "network fenrir-fleet, field 'gateway': 172.22.0.1 is outside subnet 172.21.0.0/24"


def test_gateway_that_is_not_an_address_names_the_field():
    with pytest.raises(NetworkError, match="field 'gateway'"):
        ensure_network(FakeApi(), params(gateway="gw.example"), False)


def test_gateway_defaults_to_the_first_host():
    api = FakeApi()
    out = ensure_network(api, params(subnet="10.9.8.0/24", gateway=None), False)
    assert api.created[0]["ipam"]["Config"] == [dict(Subnet="10.9.8.0/24", Gateway="10.9.8.1")]
    assert out["network"]["gateway"] == "10.9.8.1"


# --------------------------------------------------------------------------- creating


def test_create_with_fixed_subnet_gateway_and_label():
    api = FakeApi([BRIDGE])
    out = ensure_network(api, params(labels={"team": "ops"}), False)
    assert api.created == [dict(name="fenrir-fleet", driver="bridge",
                                ipam=dict(Driver="default", Config=[dict(Subnet="172.21.0.0/24",
                                                                         Gateway="172.21.0.1")]),
                                labels={"team": "ops", "fenrir.fleet.network": "true"}, check_duplicate=True)]
    assert out["changed"] is True
    assert out["network"] == dict(name="fenrir-fleet", id="new-id", driver="bridge", subnet="172.21.0.0/24",
                                  gateway="172.21.0.1", containers=0)
    assert out["diff"] == dict(before=None, after=out["network"])


def test_check_mode_creates_nothing():
    api = FakeApi([BRIDGE])
    out = ensure_network(api, params(), True)
    assert api.created == []
    assert out["changed"] is True and out["network"]["id"] is None
    assert out["diff"]["after"] == dict(name="fenrir-fleet", driver="bridge", subnet="172.21.0.0/24",
                                        gateway="172.21.0.1")


def test_engine_refusal_is_a_network_error():
    class Refusing(FakeApi):
        def create_network(self, *a, **kw):
            raise APIError("409", explanation="network with name fenrir-fleet already exists")
    with pytest.raises(NetworkError, match="Docker refused to create it: network with name fenrir-fleet already"):
        ensure_network(Refusing(), params(), False)


# --------------------------------------------------------------------------- overlaps


def test_overlap_with_another_network_names_it_and_the_field():
    api = FakeApi([net("other", "172.21.0.128/25", "172.21.0.129")])
    with pytest.raises(NetworkError) as err:
        ensure_network(api, params(), False)
    msg = str(err.value)
    assert msg.startswith("network fenrir-fleet, field 'subnet': 172.21.0.0/24 overlaps 172.21.0.128/25 of Docker "
                          "network other")
    assert "choose another subnet" in msg
    assert api.created == []


def test_overlap_is_refused_in_check_mode_too():
    with pytest.raises(NetworkError, match="overlaps 172.16.0.0/12"):
        ensure_network(FakeApi([net("wide", "172.16.0.0/12", "172.16.0.1")]), params(), True)


def test_overlap_found_by_inspecting_a_network_listed_without_ipam():
    api = FakeApi([net("other", "172.21.0.0/16", "172.21.0.1")], list_ipam=False)
    with pytest.raises(NetworkError, match="of Docker network other"):
        ensure_network(api, params(), False)


def test_adjacent_and_ipv6_networks_do_not_clash():
    api = FakeApi([BRIDGE, net("next", "172.21.1.0/24", "172.21.1.1"), net("v6", "fd00::/64", "fd00::1"),
                   net("host", driver="host"), net("none", driver="null")])
    assert ensure_network(api, params(), False)["changed"] is True


# --------------------------------------------------------------------------- an existing network


def test_existing_matching_network_is_left_alone():
    api = FakeApi([BRIDGE, net("fenrir-fleet", "172.21.0.0/24", "172.21.0.1")])
    out = ensure_network(api, params(), False)
    assert out["changed"] is False and api.created == []
    assert out["network"]["subnet"] == "172.21.0.0/24" and out["diff"]["before"] == out["diff"]["after"]


def test_existing_network_listed_without_ipam_is_inspected():
    api = FakeApi([net("fenrir-fleet", "172.21.0.0/24", "172.21.0.1")], list_ipam=False)
    assert ensure_network(api, params(), False)["changed"] is False


def test_existing_network_with_another_subnet_is_refused():
    api = FakeApi([net("fenrir-fleet", "172.30.0.0/24", "172.30.0.1")])
    with pytest.raises(NetworkError) as err:
        ensure_network(api, params(), False)
    msg = str(err.value)
    assert "network fenrir-fleet, field 'subnet'" in msg
    assert "subnet is 172.30.0.0/24, not 172.21.0.0/24" in msg
    assert "docker network rm fenrir-fleet" in msg


def test_existing_network_with_another_gateway_is_refused():
    api = FakeApi([net("fenrir-fleet", "172.21.0.0/24", "172.21.0.254")])
    with pytest.raises(NetworkError, match="gateway is 172.21.0.254, not 172.21.0.1"):
        ensure_network(api, params(), False)


def test_existing_network_with_another_driver_names_the_driver_field():
    api = FakeApi([net("fenrir-fleet", "172.21.0.0/24", "172.21.0.1", driver="macvlan")])
    with pytest.raises(NetworkError) as err:
        ensure_network(api, params(), False)
    assert "driver is macvlan, not bridge" in str(err.value)
    assert "field 'driver'" in str(err.value)


# --------------------------------------------------------------------------- absent


def test_absent_network_that_does_not_exist():
    out = ensure_network(FakeApi([BRIDGE]), params(state="absent"), False)
    assert out == dict(changed=False, network=None, diff=dict(before=None, after=None))


def test_absent_removes_an_empty_network():
    api = FakeApi([net("fenrir-fleet", "172.21.0.0/24", "172.21.0.1")])
    out = ensure_network(api, params(state="absent"), False)
    assert out["changed"] is True and api.removed == ["id-fenrir-fleet"]
    assert out["diff"]["before"]["subnet"] == "172.21.0.0/24" and out["diff"]["after"] is None


def test_absent_in_check_mode_removes_nothing():
    api = FakeApi([net("fenrir-fleet", "172.21.0.0/24", "172.21.0.1")])
    assert ensure_network(api, params(state="absent"), True)["changed"] is True
    assert api.removed == []


def test_absent_refused_while_live_containers_are_attached():
    api = FakeApi([net("fenrir-fleet", "172.21.0.0/24", "172.21.0.1", containers={"c1": {}})], containers={"c1"})
    with pytest.raises(NetworkError, match="network fenrir-fleet still has 1 containers attached; decommission"):
        ensure_network(api, params(state="absent"), False)
    assert api.removed == []


def test_absent_waits_out_endpoints_of_removed_containers(monkeypatch):
    api = FakeApi([net("fenrir-fleet", "172.21.0.0/24", "172.21.0.1", containers={"gone": {}})])
    seen = []
    real = api.inspect_network

    def inspect_network(ident):
        seen.append(ident)
        n = real(ident)
        if len(seen) > 2:  # the engine releases the endpoint a moment later
            n["Containers"] = {}
        return n
    api.inspect_network = inspect_network
    monkeypatch.setattr("time.sleep", lambda s: None)
    assert ensure_network(api, params(state="absent"), False)["changed"] is True
    assert api.removed == ["id-fenrir-fleet"] and len(seen) == 3


def test_absent_check_mode_also_refuses_while_containers_are_attached():
    api = FakeApi([net("fenrir-fleet", "172.21.0.0/24", "172.21.0.1", containers={"c1": {}})], containers={"c1"})
    with pytest.raises(NetworkError, match="still has 1 containers attached"):
        ensure_network(api, params(state="absent"), True)


# --------------------------------------------------------------------------- view


def test_view():
    n = net("fenrir-fleet", "172.21.0.0/24", "172.21.0.1", containers={"a": {}, "b": {}})
    assert nw.view(n) == dict(name="fenrir-fleet", id="id-fenrir-fleet", driver="bridge", subnet="172.21.0.0/24",
                              gateway="172.21.0.1", containers=2)
    assert nw.view(net("x", driver="host"))["subnet"] is None
    assert nw.view(None) is None
