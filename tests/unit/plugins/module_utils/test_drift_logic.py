"""Drift and audit logic of module_utils/drift.py, without a Docker engine.

Registry rows are real (a registry in tmp_path); containers are listing entries as ``GET /containers/json``
returns them, handed to :func:`drift.container_view` and :func:`drift.compare`, or served by a fake client to
:func:`drift.fleet_status`. The same against the real engine: tests/integration/test_drift.py.
"""

import hashlib
import sqlite3
import time
from pathlib import Path
from unittest import mock

import pytest
from docker.errors import NotFound

from ansible_collections.fenrir.fleet.plugins.module_utils import drift
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry

NET = "unit-net"
NET_ID = "n" * 64
POOL = Pool("172.31.251.0/24", "172.31.251.1", "172.31.251.10", "172.31.251.99")
HOUR = 3600.0


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cid(name):
    return hashlib.sha256(name.encode()).hexdigest()


def listed(name, state="running", ip=None, labels=None, network=NET, net_id=NET_ID, names=None):
    """One entry of the container listing; ``ip`` is the address configured (and, running, held) on ``network``."""
    nets = {}
    if network:
        nets[network] = dict(IPAMConfig={"IPv4Address": ip} if ip else None,
                             NetworkID="" if state == "created" else net_id,
                             IPAddress=ip if (ip and state == "running") else "")
    return dict(Id=cid(name), Names=names or ["/" + name], State=state, Labels=labels or {},
                NetworkSettings=dict(Networks=nets))


def ours(db, label, **extra):
    labels = {"fenrir.fleet.role": "knarr-node", "fenrir.fleet.label": label,
              "fenrir.fleet.server_id": "fenrir-" + label, "fenrir.fleet.registry": str(db)}
    labels.update(extra)
    return labels


def network_info(*entries):
    """The inspection of NET, listing the running ones of ``entries`` as attached."""
    attached = {}
    for e in entries:
        if e["State"] == "running" and NET in e["NetworkSettings"]["Networks"]:
            ip = e["NetworkSettings"]["Networks"][NET]["IPAddress"]
            attached[e["Id"]] = dict(Name=e["Names"][0].lstrip("/"), IPv4Address="%s/24" % ip if ip else "")
    return dict(Id=NET_ID, Name=NET, Containers=attached)


def views(entries, info=None):
    info = network_info(*entries) if info is None else info
    return [drift.container_view(e, NET, info) for e in entries]


def make_registry(db, labels, past=(), **fields_of):
    """Allocate ``labels`` in order; those in ``past`` an hour ago. ``fields_of[label]``: fields to set then."""
    now = time.time()
    with Registry(str(db), actor="unit") as reg:
        for label in labels:
            with mock.patch("time.time", return_value=now - HOUR if label in past else now):
                with reg.transaction():
                    reg.ensure(dict(label=label, location="test"), POOL)
                    fields = fields_of.get(label.replace("-", "_"), {})
                    if fields.get("status") == "failed":
                        reg.fail(label, "test failure")
                    elif fields:
                        reg.set_fields(label, **fields)
        return {n["label"]: n for n in reg.all()}


def by_label(entries):
    out = {}
    for e in entries:
        assert e["label"] not in out, "one entry per label expected"
        out[e["label"]] = e
    return out


# --------------------------------------------------------------------------- container_view

def test_container_view_running_stopped_created():
    running = drift.container_view(listed("fenrir-a", ip="172.31.251.10"), NET, dict(Id=NET_ID, Containers={}))
    assert running == dict(id=cid("fenrir-a"), name="fenrir-a", state="running", labels={}, ip="172.31.251.10",
                           on_network=True, host_network=False, image=None, image_id=None)
    imaged = dict(listed("fenrir-a", ip="172.31.251.10"), Image="knarr:2", ImageID="sha256:" + "b" * 64)
    assert drift.container_view(imaged, NET)["image"] == "knarr:2"  # what the status shows without a record of it
    stopped = drift.container_view(listed("fenrir-b", state="exited", ip="172.31.251.11"), NET,
                                   dict(Id=NET_ID, Containers={}))
    assert (stopped["state"], stopped["ip"], stopped["on_network"]) == ("exited", "172.31.251.11", True)
    created = drift.container_view(listed("fenrir-c", state="created", ip="172.31.251.12"), NET,
                                   dict(Id=NET_ID, Containers={}))
    assert (created["ip"], created["on_network"]) == ("172.31.251.12", True)  # no network id yet: still ours


def test_container_view_network_identity():
    entry = listed("fenrir-a", state="exited", ip="172.31.251.10", net_id="o" * 64)
    # Configured for an earlier network of the same name (removed and recreated since): not on this one.
    assert drift.container_view(entry, NET, dict(Id=NET_ID, Containers={}))["on_network"] is False
    # The network does not exist at all.
    view = drift.container_view(listed("fenrir-a", ip="172.31.251.10"), NET, False)
    assert (view["on_network"], view["ip"]) == (False, None)
    # Not inspected: the listing alone decides.
    assert drift.container_view(entry, NET)["on_network"] is True
    # Another network only.
    assert drift.container_view(listed("fenrir-a", network="bridge", ip="172.17.0.2"), NET,
                                dict(Id=NET_ID, Containers={}))["on_network"] is False


def test_container_view_without_network_settings_uses_the_network_inspection():
    entry = dict(Id=cid("fenrir-a"), Names=["/fenrir-a"], State="running", Labels=None)
    info = dict(Id=NET_ID, Containers={cid("fenrir-a"): dict(Name="fenrir-a", IPv4Address="172.31.251.10/24")})
    view = drift.container_view(entry, NET, info)
    assert (view["ip"], view["on_network"], view["labels"]) == ("172.31.251.10", True, {})


def test_container_view_own_name_not_a_link_alias():
    entry = listed("fenrir-a", names=["/web/fenrir-a-link", "/fenrir-a"])
    assert drift.container_view(entry, NET)["name"] == "fenrir-a"


# --------------------------------------------------------------------------- compare: labelled containers

def test_every_labelled_drift(tmp_path):
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["a", "b", "c", "d", "e", "f", "g", "h"],
                          a=dict(status="online", node_id="a" * 64, container_id=cid("fenrir-a")),
                          b=dict(status="online"), c=dict(status="online"), d=dict(status="online"),
                          e=dict(status="failed"), h=dict(status="online", container_id="0" * 64))
    with Registry(str(db)) as reg, reg.transaction():
        reg.destroy("g", reason="test")
    ip = {k: v["ip"] for k, v in nodes.items()}
    entries = [
        listed("fenrir-a", ip=ip["a"], labels=ours(db, "a")),
        listed("fenrir-b", state="exited", ip=ip["b"], labels=ours(db, "b")),
        listed("fenrir-c", ip="172.31.251.200", labels=ours(db, "c")),
        listed("fenrir-f", ip=ip["f"], labels=ours(db, "f")),
        listed("fenrir-g", ip=ip["g"], labels=ours(db, "g")),
        listed("fenrir-h", ip=ip["h"], labels=ours(db, "h")),
        listed("fenrir-x", ip="172.31.251.201", labels=ours(db, "x")),
        listed("fenrir-y", ip="172.31.251.202", labels=ours(tmp_path / "other" / "fleet.db", "y")),
        listed("unrelated", ip="172.31.251.203"),
    ]
    result = drift.compare(drift.read_nodes(str(db)), views(entries), str(db))
    assert [(e["label"], e["drift"]) for e in result] == [
        ("a", []), ("b", ["stopped"]), ("c", ["address differs"]), ("d", ["container missing"]),
        ("e", ["status failed", "container missing"]), ("f", ["status provisioning"]),
        ("h", ["container id differs"]), ("g", ["not in registry"]), ("x", ["not in registry"])]
    got = by_label(result)
    assert got["a"]["container_id"] == cid("fenrir-a") and got["a"]["matched_by"] == "label"
    assert got["a"]["record_age"] < 60 and got["a"]["node_id"] == "a" * 64
    assert got["b"]["container_ip"] == ip["b"]  # configured address of a stopped container: no address drift
    assert got["d"]["matched_by"] is None and got["d"]["container_name"] is None
    assert got["g"]["registry_status"] is None and got["g"]["record_age"] is None
    assert got["x"]["server_id"] == "fenrir-x"
    summary = drift.summarize(result)
    assert summary == dict(nodes=7, containers=7, ok=1, drifted=8, status_provisioning=1, stale_provisioning=0,
                           status_failed=1, container_missing=2, stopped=1, address_differs=1,
                           container_id_differs=1, not_answering=0, wrong_identity=0, not_in_registry=2,
                           duplicate_container=0, not_in_inventory=0, host_unreachable=0)
    # The same containers against another registry: none of them is its.
    other = drift.compare(drift.read_nodes(str(db)), views(entries), str(tmp_path / "elsewhere.db"))
    assert {e["label"]: e["drift"] for e in other}["a"] == ["container missing"]
    assert not [e for e in other if "not in registry" in e["drift"]]


def test_duplicate_container(tmp_path):
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["a"], a=dict(status="online"))
    entries = [listed("fenrir-a", ip=nodes["a"]["ip"], labels=ours(db, "a")),
               listed("fenrir-a-copy", ip="172.31.251.50", labels=ours(db, "a"))]
    result = drift.compare(drift.read_nodes(str(db)), views(entries), str(db))
    assert [(e["container_name"], e["drift"]) for e in result] == [
        ("fenrir-a", []), ("fenrir-a-copy", ["duplicate container"])]


def test_containers_of_the_registry_this_one_was_copied_from_are_its_own(tmp_path):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import copy_registry, former_locations
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["a"], a=dict(status="online"))
    copy = str(tmp_path / "moved" / "fleet.db")
    copy_registry(str(db), copy, key_file=str(tmp_path / "fleet.key"))
    assert former_locations(copy) == [str(db)] and former_locations(str(db)) == []
    entries = [listed("fenrir-a", ip=nodes["a"]["ip"], labels=ours(db, "a")),
               listed("fenrir-b", ip="172.31.251.60", labels=ours("/elsewhere/fleet.db", "b"))]
    result = drift.compare(drift.read_nodes(copy), views(entries), copy, former=former_locations(copy))
    assert [(e["label"], e["drift"]) for e in result] == [("a", [])]
    result = drift.compare(drift.read_nodes(copy), views(entries), copy)
    assert [(e["label"], e["drift"]) for e in result] == [("a", ["container missing"])]


def test_the_registrys_tenant_containers_are_not_nodes(tmp_path):
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["a"], a=dict(status="online"))
    tenant = {"fenrir.fleet.role": "tenant", "fenrir.tenant_id": "acme", "fenrir.fleet.registry": str(db)}
    entries = [listed("fenrir-a", ip=nodes["a"]["ip"], labels=ours(db, "a")),
               listed("fenrir-tenant-acme", labels=tenant)]
    result = drift.compare(drift.read_nodes(str(db)), views(entries), str(db))
    assert [(e["container_name"], e["drift"]) for e in result] == [("fenrir-a", [])]


# --------------------------------------------------------------------------- compare: unlabelled containers

def test_unlabelled_containers_are_matched_by_name(tmp_path):
    """Containers of the original skill: named fenrir-<label>, no labels, on the fleet network."""
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["a", "b", "c", "d"], a=dict(status="online"), b=dict(status="online"),
                          c=dict(status="online", server_id="custom-c"), d=dict(status="online"))
    ip = {k: v["ip"] for k, v in nodes.items()}
    entries = [
        listed("fenrir-a", ip=ip["a"]),                                    # a's, by fenrir-<label>
        listed("fenrir-b", state="exited", ip=ip["b"]),                    # b's, stopped
        listed("custom-c", ip=ip["c"]),                                    # c's, by its server_id
        listed("fenrir-c", ip="172.31.251.60"),                            # c's too: a duplicate
        listed("fenrir-d", ip=ip["d"], labels=ours(tmp_path / "other.db", "d")),  # another registry's
        listed("fenrir-v", ip="172.31.251.61"),                            # on the network, nobody's
        listed("fenrir-w", network="bridge", ip="172.17.0.9"),             # not on the fleet network
        listed("other-thing", ip="172.31.251.62"),                         # not named fenrir-*
        listed("fenrir-r", ip="172.31.251.63", labels={"fenrir.fleet.role": "knarr-node"}),  # role label only
    ]
    result = drift.compare(drift.read_nodes(str(db)), views(entries), str(db))
    assert [(e["label"], e["container_name"], e["matched_by"], e["drift"]) for e in result] == [
        ("a", "fenrir-a", "name", []),
        ("b", "fenrir-b", "name", ["stopped"]),
        ("c", "custom-c", "name", []),
        ("d", None, None, ["container missing"]),
        ("c", "fenrir-c", "name", ["duplicate container"]),  # c is custom-c; fenrir-c a second one
        ("r", "fenrir-r", "name", ["not in registry"]),
        ("v", "fenrir-v", "name", ["not in registry"]),
    ]
    extra = by_label(result[5:])
    assert extra["v"]["server_id"] == "fenrir-v" and extra["v"]["container_ip"] == "172.31.251.61"
    assert extra["v"]["registry_status"] is None and extra["v"]["ip"] is None


def test_labelled_container_preferred_and_unlabelled_one_a_duplicate(tmp_path):
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["a"], a=dict(status="online", server_id="node-a"))
    entries = [listed("fenrir-a", ip=nodes["a"]["ip"]),
               listed("a-new", ip=nodes["a"]["ip"], labels=ours(db, "a"))]
    result = drift.compare(drift.read_nodes(str(db)), views(entries, dict(Id=NET_ID, Containers={})), str(db))
    assert [(e["container_name"], e["matched_by"], e["drift"]) for e in result] == [
        ("a-new", "label", []), ("fenrir-a", "name", ["duplicate container"])]


def test_destroyed_node_with_unlabelled_container_is_not_in_registry(tmp_path):
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["a"])
    with Registry(str(db)) as reg, reg.transaction():
        reg.destroy("a")
    result = drift.compare(drift.read_nodes(str(db)), views([listed("fenrir-a", ip=nodes["a"]["ip"])]), str(db))
    assert [(e["label"], e["drift"]) for e in result] == [("a", ["not in registry"])]


def test_no_fleet_network_every_address_differs(tmp_path):
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["a"], a=dict(status="online"))
    entries = [listed("fenrir-a", ip=nodes["a"]["ip"], labels=ours(db, "a")), listed("fenrir-v", ip="172.31.251.9")]
    result = drift.compare(drift.read_nodes(str(db)), views(entries, False), str(db))
    assert [(e["label"], e["container_ip"], e["drift"]) for e in result] == [("a", None, ["address differs"])]


# --------------------------------------------------------------------------- stale provisioning

def test_stale_provisioning(tmp_path):
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["old-none", "old-stopped", "old-running", "old-unlabelled", "new-none",
                               "old-online", "old-failed"],
                          past={"old-none", "old-stopped", "old-running", "old-unlabelled", "old-online",
                                "old-failed"},
                          old_online=dict(status="online"), old_failed=dict(status="failed"))
    ip = {k: v["ip"] for k, v in nodes.items()}
    entries = [listed("fenrir-old-stopped", state="exited", ip=ip["old-stopped"], labels=ours(db, "old-stopped")),
               listed("fenrir-old-running", ip=ip["old-running"], labels=ours(db, "old-running")),
               listed("fenrir-old-unlabelled", ip=ip["old-unlabelled"])]
    rows = drift.read_nodes(str(db))
    result = by_label(drift.compare(rows, views(entries), str(db)))
    assert {k: v["drift"] for k, v in result.items()} == {
        "old-none": ["status provisioning", "stale provisioning", "container missing"],
        "old-stopped": ["status provisioning", "stale provisioning", "stopped"],
        "old-running": ["status provisioning"],       # a running container: a run at work, or a node up
        "old-unlabelled": ["status provisioning"],    # running, found by name
        "new-none": ["status provisioning", "container missing"],  # young: a run may be at work
        "old-online": ["container missing"],
        "old-failed": ["status failed", "container missing"],
    }
    assert 3590 <= result["old-none"]["record_age"] <= 3700 and result["new-none"]["record_age"] < 60
    assert drift.summarize(list(result.values()))["stale_provisioning"] == 2

    # The threshold: more than stale_after seconds unchanged, measured from updated_at.
    updated = {n["label"]: n["updated_at"] for n in rows}
    at = updated["old-none"] + 100

    def stale_at(now, after):
        return sorted(e["label"] for e in drift.compare(rows, views(entries), str(db), now=now, stale_after=after)
                      if "stale provisioning" in e["drift"])
    assert "old-none" in stale_at(at, 99.5)
    assert "old-none" not in stale_at(at, 100.5)
    assert stale_at(time.time(), 0) == ["new-none", "old-none", "old-stopped"]
    assert stale_at(time.time(), 2 * HOUR) == []


# --------------------------------------------------------------------------- fleet_status with a fake engine

class FakeAPI:
    def __init__(self, listing, info):
        self.listing, self.info, self.calls = listing, info, []

    def containers(self, all=False, filters=None):
        self.calls.append(("containers", all, filters))
        return [dict(e) for e in self.listing]

    def inspect_network(self, name):
        self.calls.append(("inspect_network", name))
        if self.info is False:
            raise NotFound("network %s not found" % name)
        return self.info

    def __getattr__(self, name):
        raise AssertionError("fleet_status called %s: one listing and one network inspection only" % name)


class FakeClient:
    def __init__(self, api):
        self.api = api
        self.closed = False

    def close(self):
        self.closed = True


def engine(listing, info=None):
    api = FakeAPI(listing, network_info(*listing) if info is None else info)
    client = FakeClient(api)
    return api, client, (lambda params: client)


def test_fleet_status_costs_two_api_calls_however_many_nodes(tmp_path):
    db = tmp_path / "fleet.db"
    labels = ["n%02d" % i for i in range(60)]
    nodes = make_registry(db, labels, **{label: dict(status="online") for label in labels})
    listing = [listed("fenrir-" + label, ip=nodes[label]["ip"], labels=ours(db, label) if i % 2 else None)
               for i, label in enumerate(labels)]
    api, client, make = engine(listing)
    before = digest(db)
    result = drift.fleet_status(dict(registry=str(db), network=NET), make)
    assert api.calls == [("containers", True, None), ("inspect_network", NET)] and client.closed
    assert result["in_sync"] is True and result["changed"] is False and result["released"] == []
    assert result["summary"]["nodes"] == 60 and result["summary"]["ok"] == 60
    assert {e["matched_by"] for e in result["nodes"]} == {"label", "name"}
    assert "diff" not in result
    assert digest(db) == before


def test_fleet_status_network_missing(tmp_path):
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["a"], a=dict(status="online"))
    api, client, make = engine([listed("fenrir-a", ip=nodes["a"]["ip"], labels=ours(db, "a"))], info=False)
    result = drift.fleet_status(dict(registry=str(db), network=NET), make)
    assert [e["drift"] for e in result["nodes"]] == [["address differs"]]


def test_fleet_status_refuses_a_negative_stale_after(tmp_path):
    db = tmp_path / "fleet.db"
    make_registry(db, ["a"])
    with pytest.raises(drift.DriftError, match="stale_after must be 0 or more"):
        drift.fleet_status(dict(registry=str(db), stale_after=-1), engine([])[2])


def test_unreadable_registry_is_a_clear_error(tmp_path):
    def no_engine(params):
        raise AssertionError("the engine must not be asked")
    with pytest.raises(drift.DriftError, match="does not exist"):
        drift.fleet_status(dict(registry=str(tmp_path / "none.db")), no_engine)
    assert not (tmp_path / "none.db").exists()


@pytest.fixture
def stale_registry(tmp_path):
    """Two stale records (one without a container, one stopped) among records that must not change."""
    db = tmp_path / "fleet.db"
    nodes = make_registry(db, ["s1", "s2", "busy", "young", "up"], past={"s1", "s2", "busy", "up"},
                          up=dict(status="online"))
    listing = [listed("fenrir-s2", state="exited", ip=nodes["s2"]["ip"], labels=ours(db, "s2")),
               listed("fenrir-busy", ip=nodes["busy"]["ip"])]
    return db, nodes, listing


def test_stale_records_are_only_reported_unless_asked(stale_registry):
    db, nodes, listing = stale_registry
    before = digest(db)
    result = drift.fleet_status(dict(registry=str(db), network=NET), engine(listing)[2])
    assert result["changed"] is False and result["released"] == []
    assert result["summary"]["stale_provisioning"] == 2
    assert digest(db) == before


def test_release_stale_check_mode_writes_nothing(stale_registry):
    db, nodes, listing = stale_registry
    before = digest(db)
    result = drift.fleet_status(dict(registry=str(db), network=NET, release_stale=True), engine(listing)[2],
                                check_mode=True)
    assert digest(db) == before
    assert result["changed"] is True and result["released"] == ["s1", "s2"]
    assert result["diff"]["before"] == {
        "s1": dict(status="provisioning", reason=None, ip=nodes["s1"]["ip"], address_held=True),
        "s2": dict(status="provisioning", reason=None, ip=nodes["s2"]["ip"], address_held=True)}
    after = result["diff"]["after"]
    assert set(after) == {"s1", "s2"} and after["s1"]["status"] == "failed" and after["s1"]["address_held"] is False
    assert after["s1"]["reason"].startswith("stale provisioning: unchanged for 36")
    # The entries show the records as they would be.
    got = by_label(result["nodes"])
    assert (got["s1"]["registry_status"], got["s1"]["drift"]) == ("failed", ["status failed", "container missing"])
    assert got["s2"]["drift"] == ["status failed", "stopped"]
    assert result["summary"]["stale_provisioning"] == 0


def test_release_stale_marks_exactly_the_stale_records_failed_and_frees_their_addresses(stale_registry, registry_rows):
    db, nodes, listing = stale_registry
    before_rows = registry_rows(db)
    with Registry(str(db), check_mode=True) as reg:
        audit_before = len(reg.audit_entries())
    result = drift.fleet_status(dict(registry=str(db), network=NET, release_stale=True), engine(listing)[2])
    assert result["changed"] is True and result["released"] == ["s1", "s2"]
    after_rows = registry_rows(db)
    for label in ("busy", "young", "up"):
        assert after_rows[label] == before_rows[label]
    for label in ("s1", "s2"):
        row = after_rows[label]
        assert row["status"] == "failed" and row["ip_int"] is None and row["ip"] == nodes[label]["ip"]
        assert row["reason"].startswith("stale provisioning: unchanged for ")
        assert "released by fenrir.fleet.fleet_status" in row["reason"]
        assert result["diff"]["after"][label] == dict(status="failed", reason=row["reason"], ip=row["ip"],
                                                      address_held=False)
    with Registry(str(db), check_mode=True) as reg:
        entries = reg.audit_entries()
        assert [(e["action"], e["label"]) for e in entries[audit_before:]] == [("fail", "s1"), ("fail", "s2")]
    assert drift.audit(str(db))["ok"] is True
    got = by_label(result["nodes"])
    assert got["s1"]["drift"] == ["status failed", "container missing"] and got["s1"]["record_age"] < 60

    # The address is free again: the next allocation takes s1's.
    with Registry(str(db)) as reg, reg.transaction():
        dummy, new, dummy2 = reg.ensure(dict(label="newcomer"), POOL)
    assert new["ip"] == nodes["s1"]["ip"]

    # Again: nothing left to release.
    again = drift.fleet_status(dict(registry=str(db), network=NET, release_stale=True), engine(listing)[2])
    assert again["changed"] is False and again["released"] == [] and again["diff"] == dict(before={}, after={})


def test_release_stale_leaves_a_record_changed_meanwhile(stale_registry, registry_rows):
    """Between the look and the release a run picked s1 up: s1 is left alone, s2 released."""
    db, nodes, listing = stale_registry
    seen = drift.read_nodes(str(db))
    with Registry(str(db)) as reg, reg.transaction():
        reg.set_fields("s1", location="picked up")
    released, before, after, records = drift.release_stale(str(db), seen, ["s1", "s2"], 600)
    assert released == ["s2"] and set(after) == {"s2"}
    assert registry_rows(db)["s1"]["status"] == "provisioning" and registry_rows(db)["s1"]["ip_int"] is not None
    assert records["s1"]["location"] == "picked up"  # compared again as it is now


# --------------------------------------------------------------------------- audit

def test_audit_intact(audit_registry):
    before = digest(audit_registry)
    result = drift.audit(str(audit_registry))
    head = result.pop("audit_head")
    assert result == dict(ok=True, entries=3, problem=None, height=None, label=None, registry=str(audit_registry))
    assert head["height"] == 3 and len(head["hash"]) == 64
    assert digest(audit_registry) == before


def test_audit_catches_an_edited_row(audit_registry, sql_edit):
    sql_edit(audit_registry, "UPDATE nodes SET location = 'elsewhere' WHERE label = 'beta'")
    result = drift.audit(str(audit_registry))
    assert result["ok"] is False and result["label"] == "beta" and result["height"] == 3
    assert "node 'beta' differs from audit entry 3 in location" in result["problem"]


def test_audit_catches_an_edited_entry(audit_registry, sql_edit):
    sql_edit(audit_registry, "UPDATE audit SET actor = 'someone else' WHERE height = 2")
    result = drift.audit(str(audit_registry))
    assert result["ok"] is False and result["height"] == 2
    assert "content does not match its hash" in result["problem"]


def test_audit_refuses_what_it_cannot_read(tmp_path, sql_edit):
    with pytest.raises(drift.DriftError, match="does not exist"):
        drift.audit(str(tmp_path / "fleet.db"))
    assert not (tmp_path / "fleet.db").exists()
    old = tmp_path / "old.db"
    sql_edit(old, "CREATE TABLE fleet_nodes (label TEXT PRIMARY KEY, ip TEXT)")
    sql_edit(old, "PRAGMA user_version = 1")
    with pytest.raises(drift.DriftError, match="schema version 1 .*original fleet-provision-docker-lite skill"):
        drift.audit(str(old))
    conn = sqlite3.connect(old)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.close()


def test_an_outside_change_can_be_accepted_after_looking_at_it(tmp_path):
    import sqlite3 as _sqlite3
    from ansible_collections.fenrir.fleet.plugins.module_utils.drift import audit, audit_accept
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry, RegistryError
    db = str(tmp_path / "fleet.db")
    with Registry(db) as reg:
        with reg.transaction():
            reg.ensure({"label": "alpha", "location": "eu"}, Pool())
    conn = _sqlite3.connect(db)
    conn.execute("UPDATE nodes SET location = 'moved by hand' WHERE label = 'alpha'")
    conn.commit()
    conn.close()
    assert audit(db)["ok"] is False and audit(db)["label"] == "alpha"
    with Registry(db) as reg:  # writes to the edited record are refused
        with pytest.raises(RegistryError):
            with reg.transaction():
                reg.set_fields("alpha", status="running")
    planned = audit_accept(db, labels=["alpha"], check_mode=True)
    assert planned["changed"] and planned["accepted"] == ["alpha"] and planned["ok"]
    assert audit(db)["ok"] is False  # check mode wrote nothing
    done = audit_accept(db, labels=["alpha"])
    assert done["changed"] and done["ok"] and audit(db)["ok"]
    assert audit_accept(db, labels=["alpha"])["changed"] is False
    with Registry(db) as reg:
        with reg.transaction():
            assert reg.set_fields("alpha", status="running")
        assert reg.get("alpha")["location"] == "moved by hand"


def test_image_counts_count_the_registrys_nodes_per_image():
    nodes = [dict(label=x, server_id="fenrir-" + x, status="online", ip="172.31.251.%d" % i, image=image,
                  image_id="sha256:" + image[-1] * 64)
             for i, (x, image) in enumerate([("a", "knarr:1"), ("b", "knarr:2"), ("c", "knarr:2")], 10)]
    nodes.append(dict(label="d", server_id="fenrir-d", status="online", ip="172.31.251.20"))
    containers = [dict(drift.container_view(listed("fenrir-" + n["label"], ip=n["ip"]), NET),
                       labels={}) for n in nodes]
    entries = drift.compare(nodes, containers, "/tmp/fleet.db")
    assert [e["image"] for e in entries] == ["knarr:1", "knarr:2", "knarr:2", None]
    assert drift.image_counts(entries) == {"-": 1, "knarr:1": 1, "knarr:2": 2}
