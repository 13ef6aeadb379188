"""The role's preflight filter: every host's settings (as Ansible resolved them for that host) into one plan.

Which value a host gets is Ansible's business (tests/unit/roles/test_precedence.py runs a playbook for that);
here: validation, labels, identities, fleet settings, states and the outcome mapping."""

import base64

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fenrir.fleet.plugins.filter import knarr as f
from ansible_collections.fenrir.fleet.plugins.module_utils.identity import build_node_db, new_seed, node_id_from_seed

FLEET = {"registry": "/srv/fleet.db", "state": "present"}


def plan(by_host, remove_all=False):
    hosts = list(by_host)
    settings = [dict(dict(FLEET, label=h), **values) for h, values in by_host.items()]
    return f.knarr_node_plan(settings, hosts, remove_all)


def b64(seed):
    return base64.b64encode(build_node_db(seed)).decode()


def test_each_host_keeps_its_own_settings():
    got = plan({"a": {"ip": "172.21.0.200", "memory": "128m"}, "b": {}, "c": {"memory": "512m"}})
    assert got["present"] == [dict(label="a", ip="172.21.0.200", memory="128m"), dict(label="b"),
                              dict(label="c", memory="512m")]
    assert got["registry"] == [dict(label="a", ip="172.21.0.200"), dict(label="b"), dict(label="c")]
    assert got["absent"] == [] and got["hosts"] == {"a": "a", "b": "b", "c": "c"}
    assert got["images"] == {"knarr-cluster-node:latest": ["a", "b", "c"]}


def test_unset_settings_are_left_to_the_module_defaults():
    got = plan({"a": {"memory": None, "location": "eu"}})
    assert got["present"] == [dict(label="a", location="eu")]


def test_labels_must_be_unique_and_safe():
    with pytest.raises(AnsibleFilterError, match="hosts h1 and h2 share knarr_node_label beta"):
        plan({"h1": {"label": "beta"}, "h2": {"label": "beta"}})
    with pytest.raises(AnsibleFilterError, match=r"node 'Bad_Label' \(host h1\), field 'label' \(variable knarr_node_label\)"):
        plan({"h1": {"label": "Bad_Label"}})


def test_states_split_the_hosts_per_host():
    got = plan({"a": {}, "b": {"state": "absent"}, "c": {}})
    assert [n["label"] for n in got["present"]] == ["a", "c"] and got["absent"] == ["b"]
    with pytest.raises(AnsibleFilterError, match=r"node 'b', field 'state' \(variable knarr_node_state\): 'gone'"):
        plan({"a": {}, "b": {"state": "gone"}})


def test_remove_all_decommissions_every_host_and_accepts_what_older_tools_made():
    got = plan({"a": {}, "h": {"label": "Node_7"}}, remove_all=True)
    assert got["absent"] == ["a", "Node_7"] and got["present"] == []
    with pytest.raises(AnsibleFilterError):
        plan({"h": {"label": "Node_7"}})


def test_given_identities_are_validated_never_shared_never_shown():
    seed = new_seed()
    got = plan({"a": {"db_b64": b64(seed)}, "b": {}})
    assert got["registry"][0] == dict(label="a", node_db_b64=b64(seed)) and got["registry"][1] == dict(label="b")
    with pytest.raises(AnsibleFilterError) as bad:
        plan({"a": {}, "b": {"db_b64": base64.b64encode(b"nope").decode()}})
    assert "node 'b', field 'node_db_b64' (variable knarr_node_db_b64)" in str(bad.value)
    with pytest.raises(AnsibleFilterError) as shared:
        plan({"a": {"db_b64": b64(seed)}, "b": {"db_b64": b64(seed)}})
    message = str(shared.value)
    assert "node 'b', field 'node_db_b64'" in message and node_id_from_seed(seed) in message
    assert seed.hex() not in message and b64(seed) not in message


@pytest.mark.parametrize("name, value", [("memory", "lots"), ("port", 0), ("port", "many"), ("bootstrap", ["x"]),
                                         ("restart_policy", "sometimes"), ("provisioner_node_id", "XYZ")])
def test_a_bad_setting_names_the_node_the_host_and_the_variable(name, value):
    with pytest.raises(AnsibleFilterError, match=r"^node 'beta' \(host b\), field '%s' \(variable knarr_node_%s\): " % (name, name)):
        plan({"a": {}, "b": {"label": "beta", name: value}})


def test_an_unknown_variable_is_refused():
    with pytest.raises(AnsibleFilterError, match=r"node 'a', field 'memroy' \(variable knarr_node_memroy\): not a variable"):
        plan({"a": {"memroy": "1g"}})


def test_fleet_settings_must_be_the_same_for_every_node():
    assert len(plan({"a": {"subnet": "10.1.0.0/24"}, "b": {"subnet": "10.1.0.0/24"}})["present"]) == 2
    with pytest.raises(AnsibleFilterError) as err:
        plan({"a": {"registry": "/srv/other.db"}, "b": {}})
    assert "variable knarr_node_registry" in str(err.value)
    assert "host a has '/srv/other.db'" in str(err.value) and "host b has '/srv/fleet.db'" in str(err.value)


def test_outcomes_map_each_label_to_its_result():
    removed = dict(nodes=[dict(label="old", result=dict(status="ok"), changed=True, failed=False, reason=None)])
    started = dict(nodes=[dict(label="a", result=dict(status="error"), changed=True, failed=True, reason="boom")])
    assert f.knarr_node_outcomes([removed, started, {}]) == {
        "old": dict(label="old", result=dict(status="ok"), changed=True, failed=False, reason=None),
        "a": dict(label="a", result=dict(status="error"), changed=True, failed=True, reason="boom")}


# --------------------------------------------------------------------------- survey_bool

@pytest.mark.parametrize("answer, value", [("true", True), ("false", False), (True, True), (False, False)])
def test_survey_bool_takes_the_two_choices_and_booleans(answer, value):
    assert f.survey_bool(answer, "fenrir_dry_run") is value


@pytest.mark.parametrize("answer", ["False", "True", "no", "yes", "0", "1", "", " true", None, 0, 1])
def test_survey_bool_refuses_anything_else_naming_the_variable(answer):
    with pytest.raises(AnsibleFilterError, match="variable fenrir_dry_run: must be the survey choice"):
        f.survey_bool(answer, "fenrir_dry_run")


def test_the_plan_says_what_placement_needs_of_each_node():
    seed = new_seed()
    got = plan({"a": {"docker_host": "dh1", "network_mode": "host", "memory": "512m", "db_b64": b64(seed)},
                "b": {"ip": "172.21.0.200", "echo_price": 1.0}})
    assert got["placement"] == [dict(label="a", docker_host="dh1", network_mode="host", memory="512m",
                                     node_db_b64=b64(seed)),
                                dict(label="b", ip="172.21.0.200")]
    with pytest.raises(AnsibleFilterError, match=r"field 'docker_host' \(variable knarr_node_docker_host\)"):
        plan({"a": {"docker_host": "no spaces allowed"}})
    with pytest.raises(AnsibleFilterError, match="variable knarr_node_port_pool_start: a fleet setting"):
        plan({"a": {"port_pool_start": 20000}, "b": {"port_pool_start": 30000}})


def role_options():
    """The role's argument spec, as the preflight reads it."""
    import os
    import yaml
    path = os.path.join(os.path.dirname(f.__file__), "..", "..", "roles", "knarr_node", "meta", "argument_specs.yml")
    with open(path) as fh:
        return yaml.safe_load(fh)["argument_specs"]["main"]["options"]


@pytest.mark.parametrize("name, value, says", [
    ("wait", "maybe", "bool"), ("parallelism", "eight", "int"), ("boot_timeout", [1], "int"),
    ("state", "gone", "one of"), ("bootstrap", "not-a-list", "list"), ("network_mode", "overlay", "one of"),
    ("config_overrides", "text", "dict")])
def test_every_hosts_variables_are_checked_against_the_role_spec(name, value, says):
    """What Ansible's per-host role argument validation checks, checked once for all hosts, naming node and field."""
    options = role_options()
    settings = [dict(FLEET, label="a"), dict(FLEET, label="beta", **{name: value})]
    with pytest.raises(AnsibleFilterError, match=r"^node 'beta' \(host b\), field '%s' \(variable knarr_node_%s\): .*%s"
                       % (name, name, says)):
        f.knarr_node_plan(settings, ["a", "b"], False, options)
    # Good values of the same variables pass (and the plan is made).
    assert len(f.knarr_node_plan([dict(FLEET, label="a")], ["a"], False, options)["present"]) == 1


def test_a_given_identity_of_the_wrong_type_is_refused_without_showing_it():
    secret = {"not": "a string", "but": "ZXhhbXBsZS1zZWNyZXQ="}
    with pytest.raises(AnsibleFilterError) as err:
        f.knarr_node_plan([dict(FLEET, label="a", db_b64=secret)], ["a"], False, role_options())
    assert "field 'node_db_b64'" in str(err.value) and "ZXhhbXBsZS1zZWNyZXQ=" not in str(err.value)


def test_errors_return_gives_the_failure_as_data_and_a_good_plan_unchanged():
    """The role computes the plan in a no_log task: the message comes back as data, for the assert that shows it."""
    secret = b64(new_seed())
    settings = [dict(FLEET, label="a", db_b64=secret), dict(FLEET, label="a")]
    with pytest.raises(AnsibleFilterError) as err:
        f.knarr_node_plan(settings, ["a", "b"])
    got = f.knarr_node_plan(settings, ["a", "b"], errors="return")
    assert got == {"error": err.value.message} and "share knarr_node_label a" in got["error"]
    assert secret not in got["error"]
    good = [dict(FLEET, label="a", db_b64=secret), dict(FLEET, label="b")]
    assert f.knarr_node_plan(good, ["a", "b"], errors="return") == f.knarr_node_plan(good, ["a", "b"])
    with pytest.raises(AnsibleFilterError, match="errors: 'ignore' is not one of fail, return"):
        f.knarr_node_plan(good, ["a", "b"], errors="ignore")
