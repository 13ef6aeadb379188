"""The tenants role's filters: tenants of the play grouped by engine (each host's own settings, else the play's),
refusals naming tenant, field and where it was set, and the report (rows, table, failures)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fenrir.fleet.plugins.filter import tenants as f

ROLE_DEFAULTS = {"tenants_spec": {}, "tenants_state": "present", "tenants_docker": {}}
REMOTE = {"docker_host": "tcp://10.0.0.7:2376", "validate_certs": True, "ca_path": "/etc/fenrir/ca.pem"}


def tenant(port=None, **extra):
    spec = {"containers": [{"name": "app", "image": "fenrir-tenant-http:latest",
                            "ports": [{"container_port": 8080, "host_port": port}] if port else []}],
            "resources": {"cpu": 500, "memory": 64}}
    spec.update(extra)
    return spec


def batches(hostvars, context=None, context_host=None, tenants_list=None, prefix="fenrir"):
    context = dict({"spec": {}, "state": "present", "docker": {}}, **(context or {}))
    return f.tenant_batches(list(hostvars), hostvars, context, context_host, ROLE_DEFAULTS, tenants_list, prefix)


def test_hosts_are_tenants_grouped_by_engine():
    hostvars = {"acme": {"tenants_spec": tenant(8080)},
                "beta": {"tenants_spec": tenant(8080), "tenants_docker": REMOTE},
                "gone": {"tenants_state": "absent"}}
    got = batches(hostvars, tenants_list=[tenant(8081, tenant_id="listed")])
    assert [b["engine"] for b in got] == ["default engine", "tcp://10.0.0.7:2376"]
    assert [s["tenant_id"] for s in got[0]["present"]] == ["acme", "listed"] and got[0]["absent"] == ["gone"]
    assert [s["tenant_id"] for s in got[1]["present"]] == ["beta"] and got[1]["docker"] == REMOTE


def test_the_context_hosts_own_settings_do_not_leak():
    hostvars = {"acme": {"tenants_spec": tenant(), "tenants_docker": REMOTE}, "beta": {"tenants_spec": tenant()}}
    # The run_once task runs on acme: what it sees as tenants_docker is acme's own, not the play's.
    got = batches(hostvars, context={"docker": REMOTE}, context_host="acme")
    assert {b["engine"]: [s["tenant_id"] for s in b["present"]] for b in got} == {
        "tcp://10.0.0.7:2376": ["acme"], "default engine": ["beta"]}


def test_the_plays_settings_reach_hosts_without_their_own():
    hostvars = {"localhost": {}, "acme": {"tenants_spec": tenant()}}
    got = f.tenant_batches(["acme"], hostvars, {"spec": {}, "state": "present", "docker": REMOTE}, "localhost",
                           ROLE_DEFAULTS, [tenant(tenant_id="listed")])
    assert [(b["engine"], [s["tenant_id"] for s in b["present"]]) for b in got] == [
        ("tcp://10.0.0.7:2376", ["acme", "listed"])]


def test_a_play_setting_given_to_some_tenant_hosts_only_is_refused():
    hostvars = {"localhost": {}, "a": {"tenants_spec": tenant(), "tenants_prefix": "ttest"},
                "b": {"tenants_spec": tenant(), "tenants_prefix": "ttest"}}
    with pytest.raises(AnsibleFilterError) as err:
        f.tenant_batches(["a", "b"], hostvars, {"spec": {}, "state": "present", "docker": {}}, "localhost",
                         ROLE_DEFAULTS, [], "fenrir", {"prefix": "fenrir"})
    assert "field 'tenants_prefix': a play setting" in str(err.value) and "differs on a, b" in str(err.value)
    # The same value everywhere (group_vars/all, -e): fine.
    assert f.tenant_batches(["a", "b"], hostvars, {"spec": {}, "state": "present", "docker": {}}, "a", ROLE_DEFAULTS,
                            [], "ttest", {"prefix": "ttest"})


def test_extra_vars_are_the_plays_for_listed_tenants():
    # -e tenants_state=absent: in every host's variables, the context host's included.
    hostvars = {"localhost": {"tenants_state": "absent"}, "acme": {"tenants_state": "absent"}}
    got = f.tenant_batches(["acme"], hostvars, {"spec": {}, "state": "absent", "docker": {}}, "localhost",
                           ROLE_DEFAULTS, [tenant(tenant_id="listed")])
    assert got[0]["absent"] == ["acme", "listed"]
    # Only the context host has it: its own, not the play's.
    hostvars = {"acme": {"tenants_state": "absent", "tenants_spec": tenant()}, "beta": {"tenants_spec": tenant()}}
    got = f.tenant_batches(["acme", "beta"], hostvars, {"spec": {}, "state": "absent", "docker": {}}, "acme",
                           ROLE_DEFAULTS, [tenant(tenant_id="listed")])
    assert got[0]["absent"] == ["acme"] and [s["tenant_id"] for s in got[0]["present"]] == ["beta", "listed"]


@pytest.mark.parametrize("hostvars, tenants_list, words", [
    ({"acme": {"tenants_spec": tenant(resources={"cpu": 500, "memory": 2})}}, None,
     "tenant 'acme', field 'resources.memory'"),
    ({"acme": {"tenants_spec": tenant()}}, [tenant(tenant_id="acme")], "given twice (host acme"),
    ({"a": {"tenants_spec": tenant(8080)}, "b": {"tenants_spec": tenant(8080)}}, None, "also published by tenant 'a'"),
    ({"Bad_Host": {"tenants_spec": tenant()}}, None, "tenant 'Bad_Host', field 'tenant_id'"),
    ({"acme": {"tenants_state": "gone"}}, None, "host acme (variable tenants_spec), field 'tenants_state'"),
    ({"acme": {"tenants_spec": tenant(), "tenants_docker": {"host": "x"}}}, None, "unknown option(s) host"),
    ({"acme": {"tenants_spec": ["not", "a", "spec"]}}, None, "field 'tenants_spec'"),
    ({}, [tenant(provider_type="ecs", tenant_id="x")], "tenants_list[0]"),
])
def test_bad_input_is_named(hostvars, tenants_list, words):
    with pytest.raises(AnsibleFilterError) as err:
        batches(hostvars, tenants_list=tenants_list)
    assert words in str(err.value)


def test_the_same_host_port_on_two_engines_is_fine():
    got = batches({"a": {"tenants_spec": tenant(8080)}, "b": {"tenants_spec": tenant(8080), "tenants_docker": REMOTE}})
    assert len(got) == 2


def test_rows_table_and_failures():
    result = {"results": [
        {"docker_host": "unix:///var/run/docker.sock", "failed_tenants": ["b"], "msg": "1 of 2 tenant(s) failed: b",
         "removed": [{"tenant_id": "old", "status": "destroyed", "removed": ["fenrir-tenant-old"]}],
         "tenants": [{"tenant_id": "a", "status": "running", "health": "healthy", "cpu": 500, "memory": 64,
                      "ports": [{"container_port": 8080, "protocol": "tcp", "host_ip": "0.0.0.0", "host_port": 8080},
                                {"container_port": 9090, "protocol": "tcp", "host_ip": None, "host_port": 0}],
                      "actions": ["create", "start"]},
                     {"tenant_id": "b", "status": "failed", "exit_code": 3, "reason": "exited with code 3"}]},
        {"msg": "refused, nothing changed: tenant 'c', field 'x': y", "problems": []},
        {"skipped": True}]}
    rows = f.tenant_rows(result)
    assert [r["tenant_id"] for r in rows] == ["old", "a", "b"]
    table = f.tenant_table(rows)
    assert table[0].split() == ["TENANT", "STATUS", "HEALTH", "EXIT", "CPU", "MEM", "PORTS", "ENGINE", "DONE", "REASON"]
    assert "0.0.0.0:8080->8080/tcp, 9090/tcp" in table[2] and "create; start" in table[2] and "500m" in table[2]
    assert table[3].split()[:4] == ["b", "failed", "-", "3"]
    assert table[-1] == "3 tenant(s): 1 destroyed, 1 failed, 1 running"
    assert f.tenant_failures(result) == ["1 of 2 tenant(s) failed: b", "refused, nothing changed: tenant 'c', field 'x': y"]
    assert f.tenant_table([])[-1] == "0 tenant(s): none"
