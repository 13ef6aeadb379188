"""The tenants role's filters: every host's settings (as Ansible resolved them for it) into one plan -- tenants
grouped by engine, play settings the same everywhere, refusals naming tenant, field, host and variable -- and the
report (rows, table, failures)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fenrir.fleet.plugins.filter import tenants as f

# What every host has from the role's defaults (defaults/main.yml) and the inventory's group_vars/all.
ROLE_DEFAULTS = {"group": "tenants", "list": [], "state": "present", "docker": {}, "mode": "converge",
                 "output": "table", "registry": "/srv/fenrir/fleet.db"}
REMOTE = {"docker_host": "tcp://10.0.0.7:2376", "validate_certs": True, "ca_path": "/etc/fenrir/ca.pem"}


def tenant(port=None, **extra):
    spec = {"containers": [{"name": "app", "image": "fenrir-tenant-http:latest",
                            "ports": [{"container_port": 8080, "host_port": port}] if port else []}],
            "resources": {"cpu": 500, "memory": 64}}
    spec.update(extra)
    return spec


def plan(tenant_hosts, others=None, **play):
    """tenant_hosts / others: {host: its own settings}; play: settings every host has (play vars, -e)."""
    by_host = dict(others if others is not None else {"localhost": {}}, **tenant_hosts)
    settings = [dict(ROLE_DEFAULTS, **dict(play, **values)) for values in by_host.values()]
    return f.tenant_plan(settings, list(by_host), {"tenants": list(tenant_hosts), "all": list(by_host)})


def engines(got):
    return {b["engine"]: ([s["tenant_id"] for s in b["present"]], b["absent"]) for b in got["batches"]}


def test_hosts_are_tenants_grouped_by_engine():
    got = plan({"acme": {"spec": tenant(8080)}, "beta": {"spec": tenant(8080), "docker": REMOTE},
                "gone": {"state": "absent"}}, list=[tenant(8081, tenant_id="listed")])
    assert engines(got) == {"default engine": (["acme", "listed"], ["gone"]), "tcp://10.0.0.7:2376": (["beta"], [])}
    assert got["batches"][1]["docker"] == REMOTE and got["tenants"] == 4


def test_each_tenant_host_has_its_own_and_the_first_hosts_do_not_leak():
    # acme comes first (the host run_once tasks run on): its own engine is its own, not beta's.
    got = plan({"acme": {"spec": tenant(), "docker": REMOTE}, "beta": {"spec": tenant()}}, others={})
    assert engines(got) == {"tcp://10.0.0.7:2376": (["acme"], []), "default engine": (["beta"], [])}


def test_listed_tenants_take_the_plays_state_and_engine():
    # The play's value is what the hosts that are not tenants have (localhost: play vars, -e, group_vars/all).
    got = plan({"acme": {"spec": tenant(), "state": "absent"}}, others={"localhost": {"docker": REMOTE}},
               list=[tenant(tenant_id="listed")])
    assert engines(got) == {"default engine": ([], ["acme"]), "tcp://10.0.0.7:2376": (["listed"], [])}
    assert got["docker"] == REMOTE
    # -e tenants_state=absent: every host has it.
    got = plan({"acme": {"spec": tenant()}}, list=[tenant(tenant_id="listed")], state="absent")
    assert engines(got) == {"default engine": ([], ["acme", "listed"])}
    # Only tenant hosts in the play (--limit): the value they all have.
    got = plan({"acme": {"spec": tenant()}}, others={}, list=[tenant(tenant_id="listed")])
    assert engines(got) == {"default engine": (["acme", "listed"], [])}


def test_the_plays_state_for_listed_tenants_must_be_one():
    with pytest.raises(AnsibleFilterError) as err:
        plan({"acme": {"spec": tenant()}}, others={"localhost": {"state": "absent"}, "ctl": {}},
             list=[tenant(tenant_id="listed")])
    assert "variable tenants_state: the state of the tenants of tenants_list" in str(err.value)
    assert "host ctl has 'present', host localhost has 'absent'" in str(err.value)


def test_a_play_setting_given_to_some_hosts_only_is_refused_naming_them():
    with pytest.raises(AnsibleFilterError) as err:
        plan({"a": {"spec": tenant(), "prefix": "ttest"}, "b": {"spec": tenant(), "prefix": "ttest"}})
    message = str(err.value)
    assert message.startswith("variable tenants_prefix: a play setting, read once for the whole play, differs")
    assert "host a has 'ttest'" in message and "host localhost has None" in message
    # The same value everywhere (group_vars/all, -e): fine, and the prefix names the containers.
    got = plan({"a": {"spec": tenant()}}, prefix="ttest")
    assert engines(got) == {"default engine": (["a"], [])}


@pytest.mark.parametrize("tenant_hosts, play, words", [
    ({"acme": {"spec": tenant(resources={"cpu": 500, "memory": 2})}}, {},
     "tenant 'acme', field 'resources.memory': "),
    ({"acme": {"spec": tenant(resources={"cpu": 500, "memory": 2})}}, {}, "(host acme, variable tenants_spec)"),
    ({"acme": {"spec": tenant()}}, {"list": [tenant(tenant_id="acme")]},
     "given twice (host acme, variable tenants_spec and variable tenants_list[0])"),
    ({"a": {"spec": tenant(8080)}, "b": {"spec": tenant(8080)}}, {}, "also published by tenant 'a'"),
    ({"Bad_Host": {"spec": tenant()}}, {}, "tenant 'Bad_Host', field 'tenant_id'"),
    ({"acme": {"state": "gone"}}, {}, "host acme, variable tenants_state: 'gone' is not one of present, absent"),
    ({"acme": {"spec": tenant(), "docker": {"host": "x"}}}, {}, "host acme, variable tenants_docker: unknown option"),
    ({"acme": {"spec": ["not", "a", "spec"]}}, {}, "host acme, variable tenants_spec: must be a tenant spec"),
    ({"acme": {}}, {}, "host acme, variable tenants_spec: a tenant host needs its spec"),
    ({"acme": {"spec": tenant(), "memroy": 64}}, {}, "host acme, variable tenants_memroy: not a variable of the "
                                                     "tenants role"),
    ({}, {"list": [tenant(provider_type="ecs", tenant_id="x")]}, "(variable tenants_list[0])"),
])
def test_bad_input_is_named(tenant_hosts, play, words):
    with pytest.raises(AnsibleFilterError) as err:
        plan(tenant_hosts, **play)
    assert words in str(err.value)


def test_an_absent_tenant_needs_no_spec_and_the_same_port_on_two_engines_is_fine():
    got = plan({"a": {"spec": tenant(8080)}, "b": {"spec": tenant(8080), "docker": REMOTE}, "c": {"state": "absent"}})
    assert engines(got) == {"default engine": (["a"], ["c"]), "tcp://10.0.0.7:2376": (["b"], [])}


def test_no_tenants_the_plays_engine_for_the_status():
    got = plan({}, others={"localhost": {"docker": REMOTE}})
    assert got == {"batches": [], "docker": REMOTE, "tenants": 0, "play": {
        k: v for k, v in ROLE_DEFAULTS.items() if k not in ("list", "state", "docker")}}


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


def test_errors_return_gives_the_failure_as_data_and_a_good_plan_unchanged():
    by_host = {"acme": dict(ROLE_DEFAULTS, spec=tenant(8080)), "beta": dict(ROLE_DEFAULTS, spec=tenant(8080))}
    groups = {"tenants": list(by_host)}
    with pytest.raises(AnsibleFilterError) as err:
        f.tenant_plan(list(by_host.values()), list(by_host), groups)
    got = f.tenant_plan(list(by_host.values()), list(by_host), groups, errors="return")
    assert got == {"error": err.value.message} and "8080" in got["error"]
    by_host["beta"]["spec"] = tenant(8081)
    assert (f.tenant_plan(list(by_host.values()), list(by_host), groups, errors="return")
            == f.tenant_plan(list(by_host.values()), list(by_host), groups))
