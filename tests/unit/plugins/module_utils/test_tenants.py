"""tenants.py and tenant_engine.py against a fake engine: what is refused before any change, what is planned,
updated in place, recreated (new container first, rollback when it fails), restored after an interrupted run,
removed; changed reported exactly; secrets never in results or labels."""

import copy
import json

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import tenants
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_engine import DIGEST_LABEL, REGISTRY_LABEL, SPEC_LABEL

from tenant_fakes import FakeClient

REGISTRY = "/srv/fenrir/fleet.db"
SPEC = {
    "tenant_id": "acme",
    "containers": [{"name": "app", "image": "fenrir-tenant-http:latest",
                    "env": {"LOG_LEVEL": "debug", "API_TOKEN": "t0k3n-s3cret"},
                    "ports": [{"container_port": 8080, "host_port": 18080, "name": "http"},
                              {"container_port": 9090, "host_port": 0}]}],
    "resources": {"cpu": 500, "memory": 64},
    "provider_config": {"restart_policy": "unless-stopped",
                        "health_check": {"test": ["CMD", "tenant-http", "health"], "interval": 1}},
}


def params(*specs, **kw):
    out = dict(tenants=list(specs) or [copy.deepcopy(SPEC)], remove=[], prefix="ttest", registry=REGISTRY,
               bind_address="127.0.0.1", parallelism=2, start_timeout=5, start_settle=0.0, docker_host=None)
    out.update(kw)
    return out


def spec(tenant_id="acme", **changes):
    s = copy.deepcopy(SPEC)
    s["tenant_id"] = tenant_id
    for key, value in changes.items():
        section, _sep, field = key.partition("__")
        if not field:
            s[section] = value  # a whole section: resources={...}
        else:
            (s["containers"][0] if section == "container" else s[section])[field] = value
    return s


@pytest.fixture
def client():
    return FakeClient()


def converge(client, *specs, check=False, diff=True, **kw):
    return tenants.converge(params(*specs, **kw), client, check_mode=check, diff=diff)


def refused(client, *specs, **kw):
    before = copy.deepcopy(client.api.containers_by_id)
    with pytest.raises(tenants.TenantRefused) as err:
        converge(client, *specs, **kw)
    assert client.api.mutations() == [] and client.api.containers_by_id == before, "refused after a change"
    return err.value


# --------------------------------------------------------------------------- create, idempotence, check mode

def test_create_with_limits_ports_labels_then_nothing_to_change(client):
    out = converge(client)
    t = out["tenants"][0]
    assert out["changed"] and t["actions"] == ["create", "start"] and t["status"] == "running"
    assert t["health"] == "healthy"
    c = client.api.by_name("ttest-tenant-acme")
    assert c["HostConfig"]["NanoCpus"] == 500_000_000
    assert c["HostConfig"]["Memory"] == c["HostConfig"]["MemorySwap"] == 64 * 2 ** 20
    assert c["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}]}
    labels = c["Config"]["Labels"]
    assert labels["ttest.tenant_id"] == "acme" and labels["ttest.owner"] == "fenrir.fleet"
    assert labels["ttest.provider"] == "docker" and labels[REGISTRY_LABEL] == REGISTRY
    assert "t0k3n-s3cret" not in json.dumps(labels) and "t0k3n-s3cret" not in json.dumps(out)
    assert t["ports"] == [dict(name="http", container_port=8080, protocol="tcp", host_ip="127.0.0.1", host_port=18080),
                          dict(name=None, container_port=9090, protocol="tcp", host_ip=None, host_port=0)]
    client.api.calls.clear()
    again = converge(client)
    assert not again["changed"] and again["tenants"][0]["actions"] == [] and client.api.mutations() == []
    assert again["diff"] == {"before": {}, "after": {}}


def test_check_mode_plans_and_changes_nothing(client):
    out = converge(client, check=True)
    assert out["changed"] and out["tenants"][0]["actions"] == ["create", "start"]
    assert client.api.mutations() == [] and client.api.names() == []
    assert out["diff"]["before"] == {"acme": None}
    after = out["diff"]["after"]["acme"]
    assert after["cpu"] == 500 and after["memory"] == 64 and after["env"]["API_TOKEN"] == "********"
    converge(client)
    client.api.calls.clear()
    planned = converge(client, spec(resources={"cpu": 250, "memory": 64}), check=True)
    assert planned["tenants"][0]["actions"] == ["update in place (cpu 500 -> 250)"]
    assert planned["diff"]["before"]["acme"]["cpu"] == 500 and planned["diff"]["after"]["acme"]["cpu"] == 250
    assert client.api.mutations() == []


# --------------------------------------------------------------------------- refusals

def test_refusals_name_the_tenant_and_field_and_change_nothing(client):
    client.api.add("web", ports={"80/tcp": [("0.0.0.0", 18081)]})
    err = refused(client, spec("a", container__image="nope:1", container__ports=[]),
                  spec("b", resources={"cpu": 4000, "memory": 64}, container__ports=[]),
                  spec("c", container__ports=[{"container_port": 80, "host_port": 18081}]),
                  spec("d", provider_config={"log_driver": "splunkish"}, container__ports=[]))
    got = {(p["tenant_id"], p["field"]): p["message"] for p in err.as_list()}
    assert "nothing is ever pulled" in got[("a", "containers[0].image")]
    assert "more than the 2 CPU(s)" in got[("b", "resources.cpu")]
    assert "already published by container web" in got[("c", "containers[0].ports[0].host_port")]
    assert "not a log driver of the Docker engine" in got[("d", "provider_config.log_driver")]
    assert str(err).startswith("refused, nothing changed: ")


def test_spec_errors_are_all_reported(client):
    err = refused(client, spec("a", resources={"cpu": 500, "memory": 2}), spec("Bad_Id"))
    assert [(p["tenant_id"], p["field"]) for p in err.as_list()] == [("a", "resources.memory"),
                                                                     ("Bad_Id", "tenant_id")]


def test_port_of_a_stopped_tenant_counts_and_both_are_named(client):
    converge(client, spec("other", container__ports=[{"container_port": 8080, "host_port": 18090}]))
    client.api.stop("ttest-tenant-other")
    client.api.calls.clear()
    err = refused(client, spec(container__ports=[{"container_port": 80, "host_port": 18090}]))
    assert "container ttest-tenant-other (tenant 'other')" in err.as_list()[0]["message"]
    # Another address on the same port is free; a wildcard takes every address.
    client.api.add("loop", ports={"80/tcp": [("127.0.0.2", 18095)]})
    assert converge(client, spec(container__ports=[{"container_port": 80, "host_port": 18095}]))["changed"]


@pytest.mark.parametrize("labels, words", [
    ({}, "no ttest.tenant_id label"),
    ({"fenrir.tenant_id": "acme"}, "tenant 'acme' under prefix 'fenrir'"),
    ({"ttest.tenant_id": "acme", "fenrir.fleet.role": "tenant", REGISTRY_LABEL: "/elsewhere/fleet.db"},
     "belongs to the fleet registry /elsewhere/fleet.db"),
    ({"ttest.tenant_id": "acme", "fenrir.fleet.role": "tenant"}, "was not made by fenrir.fleet"),
])
def test_containers_of_others_are_never_touched(client, labels, words):
    client.api.add("ttest-tenant-acme", labels=labels)
    err = refused(client)
    assert err.as_list()[0]["field"] == "tenant_id" and words in err.as_list()[0]["message"]
    with pytest.raises(tenants.TenantRefused):
        tenants.destroy(params(tenants=["acme"]), client)
    assert client.api.mutations() == []


# --------------------------------------------------------------------------- updates

def test_limits_and_restart_policy_are_updated_in_place(client):
    converge(client)
    cid = client.api.by_name("ttest-tenant-acme")["Id"]
    out = converge(client, spec(resources={"cpu": 1000, "memory": 128},
                                provider_config=dict(SPEC["provider_config"], restart_policy="always")))
    assert out["tenants"][0]["actions"] == [
        "update in place (cpu 500 -> 1000, memory 64 -> 128, memory_swap 64 -> 128, restart_policy unless-stopped "
        "-> always)"]
    c = client.api.by_name("ttest-tenant-acme")
    assert c["Id"] == cid and c["HostConfig"]["NanoCpus"] == 10 ** 9 and c["HostConfig"]["MemorySwap"] == 128 * 2 ** 20


def test_an_update_the_engine_refuses_becomes_a_recreate(client):
    converge(client)
    client.api.refuse_update = True
    out = converge(client, spec(resources={"cpu": 500, "memory": 32}))
    assert out["tenants"][0]["actions"][1].startswith("recreate (the engine refused the update")
    assert client.api.by_name("ttest-tenant-acme")["HostConfig"]["Memory"] == 32 * 2 ** 20


def test_recreate_starts_the_new_container_before_removing_the_old(client):
    converge(client)
    old = client.api.by_name("ttest-tenant-acme")["Id"]
    client.api.calls.clear()
    out = converge(client, spec(container__env={"LOG_LEVEL": "info", "API_TOKEN": "t0k3n-s3cret"}))
    t = out["tenants"][0]
    assert t["actions"][0] == "recreate (env)" and not t["failed"]
    assert [c[:2] for c in client.api.mutations()] == [
        ("rename", "ttest-tenant-acme"), ("create_container", "ttest-tenant-acme"),
        ("stop", "ttest-tenant-acme.previous"),  # it holds the same host port
        ("start", "ttest-tenant-acme"),
        ("update", "ttest-tenant-acme"),  # its restart policy, now that it has proved itself
        ("remove_container", "ttest-tenant-acme.previous")]
    assert client.api.mutations()[0][2] == "ttest-tenant-acme.previous"
    assert client.api.by_name("ttest-tenant-acme")["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert client.api.names() == ["ttest-tenant-acme"] and client.api.by_name("ttest-tenant-acme")["Id"] != old
    assert out["diff"]["before"]["acme"]["env"]["LOG_LEVEL"] == "debug"
    assert out["diff"]["after"]["acme"]["env"]["LOG_LEVEL"] == "info"


def test_a_changed_secret_recreates_and_shows_as_changed_without_its_value(client):
    converge(client)
    out = converge(client, spec(container__env={"LOG_LEVEL": "debug", "API_TOKEN": "new-s3cret"}), check=True)
    assert out["tenants"][0]["actions"] == ["recreate (env)"]
    assert out["diff"]["after"]["acme"]["env"]["API_TOKEN"] == "******** (changed)"
    assert "new-s3cret" not in json.dumps(out) and "t0k3n-s3cret" not in json.dumps(out)


def test_without_shared_host_ports_the_old_keeps_running_until_the_new_proves_itself(client):
    converge(client)
    client.api.calls.clear()
    converge(client, spec(container__ports=[{"container_port": 8080, "host_port": 18081}]))
    assert ("stop", "ttest-tenant-acme.previous") not in client.api.mutations()


def test_a_new_container_that_fails_is_rolled_back_and_the_tenant_fails(client):
    converge(client)
    old = client.api.by_name("ttest-tenant-acme")["Id"]
    out = converge(client, spec(container__image="fenrir-tenant-http:exits"))
    t = out["tenants"][0]
    assert t["failed"] and t["rolled_back"] and out["failed_tenants"] == ["acme"]
    assert "update rolled back" in t["reason"] and "exited with code 3" in t["reason"]
    assert "tenant 'acme'" in out["msg"]
    c = client.api.by_name("ttest-tenant-acme")
    assert c["Id"] == old and c["State"]["Running"] and client.api.names() == ["ttest-tenant-acme"]
    assert t["record"]["status"] == "running" and t["record"]["container_id"] == old
    assert t["record"]["spec_digest"] == c["Config"]["Labels"][DIGEST_LABEL]  # the previous spec, still in force


def test_an_unhealthy_new_container_is_rolled_back(client):
    converge(client)
    out = converge(client, spec(container__env={"TENANT_UNHEALTHY": "1"}))
    assert out["tenants"][0]["rolled_back"] and "health check failed" in out["tenants"][0]["reason"]


def test_a_new_tenant_that_fails_keeps_its_container_and_is_failed_with_its_exit_code(client):
    out = converge(client, spec(container__env={"TENANT_EXIT_CODE": "3"}))
    t = out["tenants"][0]
    assert t["failed"] and t["status"] == "failed" and t["exit_code"] == 3
    assert t["record"]["status"] == "failed" and t["record"]["exit_code"] == 3
    assert client.api.names() == ["ttest-tenant-acme"]  # kept: its logs tell why
    # Not restarted again and again: it gets its restart policy only once it has proved itself.
    assert client.api.by_name("ttest-tenant-acme")["HostConfig"]["RestartPolicy"]["Name"] == "no"


def test_a_stopped_tenant_is_started(client):
    converge(client)
    client.api.stop("ttest-tenant-acme")
    client.api.calls.clear()
    out = converge(client)
    assert out["tenants"][0]["actions"] == ["start"] and out["changed"]


def test_an_interrupted_recreate_is_undone_first(client):
    converge(client)
    old = client.api.by_name("ttest-tenant-acme")["Id"]
    # A run killed after creating the new container: the old one waits aside.
    client.api.rename(old, "ttest-tenant-acme.previous")
    client.api.create_container(image="fenrir-tenant-http:latest", name="ttest-tenant-acme", labels=dict(
        client.api.by_name("ttest-tenant-acme.previous")["Config"]["Labels"]), host_config=dict(
        nano_cpus=1, mem_limit=1, memswap_limit=1, restart_policy={"Name": "no"}))
    client.api.calls.clear()
    out = converge(client)
    assert out["tenants"][0]["actions"][:2] == ["remove ttest-tenant-acme (unproven, left by an interrupted run)",
                                                "restore ttest-tenant-acme.previous as ttest-tenant-acme"]
    assert client.api.names() == ["ttest-tenant-acme"] and client.api.by_name("ttest-tenant-acme")["Id"] == old
    assert not converge(client)["changed"]


# --------------------------------------------------------------------------- removal

def test_destroy_removes_the_container_and_destroys_the_record(client):
    converge(client)
    out = tenants.destroy(params(tenants=["acme", {"tenant_id": "never"}]), client, diff=True)
    by_id = {t["tenant_id"]: t for t in out["tenants"]}
    assert by_id["acme"]["removed"] == ["ttest-tenant-acme"] and by_id["acme"]["destroyed"]
    assert by_id["acme"]["record"]["status"] == "destroyed" and by_id["acme"]["changed"]
    assert by_id["never"] == dict(by_id["never"], status="absent", changed=False, removed=[])
    assert out["diff"]["before"]["acme"]["container_name"] == "ttest-tenant-acme"
    assert client.api.names() == []
    assert not tenants.destroy(params(tenants=["acme"]), client)["changed"]


def test_remove_in_the_same_call_frees_ports_for_the_others(client):
    converge(client)
    moved = spec("beta")
    out = converge(client, moved, remove=["acme"])
    assert out["removed"][0]["removed"] == ["ttest-tenant-acme"] and out["tenants"][0]["status"] == "running"
    assert client.api.names() == ["ttest-tenant-beta"]
    with pytest.raises(tenants.TenantRefused, match="either kept or removed"):
        converge(client, spec("beta"), remove=["beta"])


def test_check_mode_destroy_changes_nothing(client):
    converge(client)
    client.api.calls.clear()
    out = tenants.destroy(params(tenants=["acme"]), client, check_mode=True)
    assert out["changed"] and client.api.mutations() == [] and out["tenants"][0]["record"]["status"] == "destroyed"


# --------------------------------------------------------------------------- status

def test_info_reports_every_tenant_and_the_foreign(client):
    converge(client, spec("a", container__ports=[]), spec("b", container__ports=[],
                                                          container__env={"TENANT_EXIT_CODE": "3"}))
    client.api.add("ttest-tenant-x", labels={"ttest.tenant_id": "x", "fenrir.fleet.role": "tenant",
                                             REGISTRY_LABEL: "/other/fleet.db"})
    out = tenants.status(params(), client)
    seen = [(t["tenant_id"], t["status"], t["exit_code"]) for t in out["tenants"]]
    assert seen == [("a", "running", None), ("b", "failed", 3)]
    assert out["summary"] == {"running": 1, "failed": 1}
    assert out["foreign"][0]["container_name"] == "ttest-tenant-x"
    assert out["changed"] is False
    one = tenants.status(params(tenant_ids=["b", "zz"]), client)
    assert [(t["tenant_id"], t["status"]) for t in one["tenants"]] == [("b", "failed"), ("zz", "absent")]


def test_the_spec_label_holds_no_secret(client):
    converge(client)
    labels = client.api.by_name("ttest-tenant-acme")["Config"]["Labels"]
    view = json.loads(labels[SPEC_LABEL])
    assert view["env"] == {"API_TOKEN": "********", "LOG_LEVEL": "debug"}
