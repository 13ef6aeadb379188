"""A fleet over several engines, without Docker: where a placed node answers and what its container looks like
(placed_nodes.Placed), status over engines (drift), images copied to hosts (knarr_image), engine connections."""

import io
import json
import tarfile

import pytest
from docker.errors import APIError, NotFound

from ansible_collections.fenrir.fleet.plugins.module_utils import drift, fleet_hosts, knarr_image
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.node_containers import (
    NodeWork, desired_view, published_ports, recreate_reasons)
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import normalize_node
from ansible_collections.fenrir.fleet.plugins.module_utils.placed_nodes import Placed
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry
from test_drift_logic import NET, listed, network_info, ours

SEED = bytes(range(32))


# --------------------------------------------------------------------------- placed nodes

def work(placed, **settings):
    spec = placed.adjust(normalize_node(dict(label="n1", **settings)))
    return NodeWork(spec, "172.21.1.10" if placed.container_ip else "10.0.0.1", SEED, "/r/fleet.db",
                    "host" if placed.network_mode == "host" else NET, placement=placed)


def test_a_local_bridge_node_is_the_single_engine_container():
    placed = Placed("local", "bridge", "172.21.0.10", None, None, 9010)
    w = work(placed)
    assert placed.create_options() == {} and w.probe_at == ("172.21.0.10", 9010)
    classic = NodeWork(normalize_node(dict(label="n1")), "172.21.0.10", SEED, "/r/fleet.db", NET)
    assert w.files == classic.files and w.labels == classic.labels
    assert desired_view(w, "sha256:x") == desired_view(classic, "sha256:x")


def test_a_bridge_node_on_a_host_publishes_its_port_on_the_host_address_and_advertises_it():
    placed = Placed("h1", "bridge", "172.21.1.10", 20003, "10.0.0.1", 9010)
    w = work(placed)
    assert w.spec["port"] == 20003 and w.probe_at == ("10.0.0.1", 20003) and w.container_ip == "172.21.1.10"
    toml = w.files["/opt/knarr/knarr.toml"][0].decode()
    assert 'port = 20003' in toml and 'advertise_host = "10.0.0.1"' in toml
    assert placed.create_options() == {"host_config": {"port_bindings": {"20003/tcp": ("10.0.0.1", 20003)}},
                                       "container": {"ports": [(20003, "tcp")]}}
    assert desired_view(w, "sha256:x")["ports_published"] == ["10.0.0.1:20003->20003/tcp"]
    current = dict(desired_view(w, "sha256:x"), ports_published=published_ports(
        {"20003/tcp": [{"HostIp": "10.0.0.1", "HostPort": "20003"}]}))
    assert recreate_reasons(current, desired_view(w, "sha256:x")) == []
    moved = dict(current, ports_published=published_ports({"20000/tcp": [{"HostIp": "10.0.0.1", "HostPort": "20000"}]}))
    assert recreate_reasons(moved, desired_view(w, "sha256:x"))


def test_a_host_network_node_takes_a_block_of_ports_on_the_host_address():
    placed = Placed("h1", "host", "10.0.0.1", 20006, "10.0.0.1", 9010)
    w = work(placed, cockpit_port=8080)
    assert (w.spec["port"], w.spec["sidecar_port"], w.spec["cockpit_port"]) == (20006, 20007, 20008)
    assert w.container_ip is None and w.network == "host" and placed.create_options() == {}
    toml = w.files["/opt/knarr/knarr.toml"][0].decode()
    assert 'host = "10.0.0.1"' in toml and 'advertise_host = "10.0.0.1"' in toml
    assert work(placed, cockpit_port=0).spec["cockpit_port"] == 0  # off stays off
    overridden = work(placed, config_overrides={"node": {"host": "0.0.0.0"}})
    assert 'host = "0.0.0.0"' in overridden.files["/opt/knarr/knarr.toml"][0].decode()


def test_published_ports_of_an_inspected_container():
    assert published_ports(None) is False and published_ports({}) is False
    bindings = {"9010/tcp": [{"HostIp": "", "HostPort": "9010"}], "1/udp": [{"HostIp": "1.2.3.4", "HostPort": "5"}]}
    assert published_ports(bindings) == ["0.0.0.0:9010->9010/tcp", "1.2.3.4:5->1/udp"]


# --------------------------------------------------------------------------- engines

def test_engine_connection_options():
    local = dict(name="local")
    params = dict(docker_host="unix:///var/run/docker.sock", timeout=30)
    assert fleet_hosts.engine_params(params, local) is params
    remote = fleet_hosts.engine_params(params, dict(name="h1", docker_host="tcp://10.0.0.1:2376", ca_path="/c",
                                                    client_cert="/cert", client_key="/key"))
    assert remote["validate_certs"] and remote["tls"] and remote["ca_path"] == "/c" and remote["timeout"] == 30
    with pytest.raises(FleetError, match="^Docker host 'h1': never proven$"):
        fleet_hosts.connect(params, dict(name="h1", problem="never proven"))


def test_connect_engines_isolates_a_failing_host(monkeypatch):
    def connect(params, engine, max_pool_size=16):
        if engine["name"] == "dead":
            raise FleetError("unreachable: no route to host", label="dead", kind="Docker host")
        return engine["name"]
    monkeypatch.setattr(fleet_hosts, "connect", connect)
    clients, failed = fleet_hosts.connect_engines({}, [dict(name="a"), dict(name="dead"), dict(name="skip")],
                                                  skip={"skip": "image copy failed"})
    assert clients == {"a": "a"} and failed["skip"] == "image copy failed"
    assert failed["dead"] == "Docker host 'dead': unreachable: no route to host"
    assert fleet_hosts.host_reason("dead", failed["dead"]) == failed["dead"]


# --------------------------------------------------------------------------- status over engines

class Api:
    def __init__(self, listing, info):
        self.listing, self.info = listing, info

    def containers(self, all=False):
        return self.listing

    def inspect_network(self, name):
        if self.info is False:
            raise NotFound("no network")
        return self.info


class Client:
    def __init__(self, api):
        self.api = api

    def close(self):
        pass


def test_status_asks_every_engine_and_names_an_unreachable_host(tmp_path, monkeypatch):
    db = str(tmp_path / "fleet.db")
    with Registry(db) as reg:
        reg.ensure_host("h1", address="10.0.0.1", endpoint="tcp://10.0.0.1:2376", status="connected")
        reg.ensure_host("h2", address="10.0.0.2", endpoint="tcp://10.0.0.2:2376", status="connected")
        h1 = Pool.for_subnet(reg.get_host("h1")["subnet"])
        with reg.transaction():
            reg.place(dict(label="b"), h1, docker_host="h1", ports=(20000, 20099, 3), host_address="10.0.0.1")
            reg.place(dict(label="h"), None, docker_host="h1", network_mode="host", ports=(20000, 20099, 3),
                      host_address="10.0.0.1")
            reg.place(dict(label="gone"), Pool.for_subnet(reg.get_host("h2")["subnet"]), docker_host="h2",
                      ports=(20000, 20099, 3), host_address="10.0.0.2")
            reg.place(dict(label="old"), h1, docker_host="h1", ports=(20000, 20099, 3), host_address="10.0.0.1")
            for label in ("b", "h", "gone", "old"):
                reg.set_fields(label, status="online")
        nodes = {n["label"]: n for n in reg.all()}
    entries = [listed("fenrir-b", ip=nodes["b"]["ip"], labels=ours(db, "b")),
               dict(listed("fenrir-h", labels=ours(db, "h"), network=None),
                    NetworkSettings=dict(Networks={"host": {"IPAddress": ""}})),
               listed("fenrir-old", ip=nodes["old"]["ip"], labels=ours(db, "old"))]

    def connect(params, engine, max_pool_size=16):
        if engine["name"] == "h2":
            raise FleetError("unreachable: connection refused", label="h2", kind="Docker host")
        return Client(Api(entries, network_info(*entries)))
    monkeypatch.setattr(fleet_hosts, "connect", connect)
    engines = [dict(name="h1", address="10.0.0.1", docker_host="x"),
               dict(name="h2", address="10.0.0.2", docker_host="y")]
    result = drift.fleet_status(dict(registry=db, network=NET, engines=engines, inventory=["b", "h", "gone"]),
                                make_client=None)
    got = {e["label"]: e for e in result["nodes"]}
    assert got["b"]["drift"] == [] and got["b"]["docker_host"] == "h1" and got["b"]["endpoint"] == "10.0.0.1:20000"
    assert got["h"]["drift"] == [] and got["h"]["network_mode"] == "host"
    assert got["gone"]["drift"] == ["host unreachable"] and got["gone"]["docker_host"] == "h2"
    assert got["old"]["drift"] == ["not in inventory"]
    hosts = {h["name"]: h for h in result["hosts"]}
    assert hosts["h1"]["nodes"] == 3 and hosts["h1"]["engine"] == "answered"
    assert hosts["h2"]["engine"] == "unreachable" and "connection refused" in hosts["h2"]["engine_problem"]
    assert result["summary"]["host_unreachable"] == 1 and result["summary"]["not_in_inventory"] == 1


def test_a_host_network_node_in_a_bridge_is_an_address_drift(tmp_path):
    db = str(tmp_path / "fleet.db")
    with Registry(db) as reg:
        reg.ensure_host("h1", address="10.0.0.1")
        with reg.transaction():
            reg.place(dict(label="h"), None, docker_host="h1", network_mode="host", ports=(20000, 20099, 3),
                      host_address="10.0.0.1")
        nodes = reg.all()
    entry = listed("fenrir-h", ip="172.21.1.10", labels=ours(db, "h"))
    views = [drift.container_view(entry, NET, network_info(entry))]
    assert drift.compare(nodes, views, db)[0]["drift"] == ["status provisioning", "address differs"]


# --------------------------------------------------------------------------- images copied to hosts

def archive(path, tags, digest="ab" * 32):
    manifest = json.dumps([{"Config": "%s.json" % digest, "RepoTags": tags, "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return "sha256:" + digest


class ImageApi:
    def __init__(self, images=None, refuse=None):
        self.images, self.refuse, self.loaded = dict(images or {}), refuse, []

    def inspect_image(self, name):
        if name not in self.images:
            raise NotFound("no such image")
        return {"Id": self.images[name]}

    def get_image(self, name, chunk_size=None):
        return iter([b"chunk-1", b"chunk-2"])

    def load_image(self, chunks, quiet=None):
        data = b"".join(chunks)  # the stream is consumed as it comes
        self.loaded.append(data)
        if self.refuse:
            raise APIError(self.refuse)
        self.images["knarr-cluster-node:latest"] = "sha256:src"
        yield {"stream": "Loaded image: knarr-cluster-node:latest"}


def test_images_are_copied_only_where_the_id_lacks_and_a_refusing_host_fails_alone(monkeypatch):
    apis = {"local": ImageApi({"knarr-cluster-node:latest": "sha256:src"}),
            "has": ImageApi({"knarr-cluster-node:latest": "sha256:src"}),
            "old": ImageApi({"knarr-cluster-node:latest": "sha256:older"}),
            "full": ImageApi(refuse="no space left on device")}
    monkeypatch.setattr(fleet_hosts, "connect", lambda params, engine: Client(apis[engine["name"]]))
    monkeypatch.setattr(knarr_image, "make_client", lambda params: Client(apis["local"]))
    params = dict(images={"knarr-cluster-node:latest": ["a"]}, source="engine", archive=None, failed_engines={},
                  engines=[dict(name="local"), dict(name="has", docker_host="x"), dict(name="old", docker_host="y"),
                           dict(name="full", docker_host="z")])
    planned = knarr_image.run(params, check_mode=True)
    assert planned["copied"] == {"old": ["knarr-cluster-node:latest"], "full": ["knarr-cluster-node:latest"]}
    assert not any(api.loaded for api in apis.values())
    result = knarr_image.run(params)
    assert result["copied"] == {"old": ["knarr-cluster-node:latest"]} and result["changed"]
    assert apis["old"].loaded == [b"chunk-1chunk-2"] and not apis["has"].loaded
    assert result["failed_engines"] == {"full": "Docker host 'full': cannot load image knarr-cluster-node:latest: "
                                                "no space left on device"}


def test_images_from_an_archive(tmp_path, monkeypatch):
    path = str(tmp_path / "node.tar")
    image_id = archive(path, ["knarr-cluster-node:latest"])
    assert knarr_image.archive_ids(path) == {"knarr-cluster-node:latest": image_id}
    api = ImageApi()

    def load(chunks, quiet=None):
        api.loaded.append(b"".join(chunks))
        api.images["knarr-cluster-node:latest"] = image_id
        return iter([{"stream": "Loaded"}])
    api.load_image = load
    monkeypatch.setattr(fleet_hosts, "connect", lambda params, engine: Client(api))
    result = knarr_image.run(dict(images={"knarr-cluster-node:latest": ["a"]}, source="archive", archive=path,
                                  failed_engines={}, engines=[dict(name="h1", docker_host="x")]))
    with open(path, "rb") as fh:
        assert api.loaded == [fh.read()] and result["copied"] == {"h1": ["knarr-cluster-node:latest"]}
    missing = knarr_image.run(dict(images={"other:1": ["a"]}, source="archive", archive=path, failed_engines={},
                                   engines=[dict(name="h1", docker_host="x")]))
    assert "other:1 lacks here and cannot be copied: it is not in %s" % path in missing["failed_engines"]["h1"]
    with pytest.raises(FleetError, match="not an image archive"):
        knarr_image.archive_ids(str(tmp_path))
