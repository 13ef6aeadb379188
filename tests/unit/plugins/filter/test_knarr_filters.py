"""The role's preflight filters: each host's settings resolved as the role would see them on that host."""

import base64

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fenrir.fleet.plugins.filter import knarr as f
from ansible_collections.fenrir.fleet.plugins.module_utils.identity import build_node_db, new_seed, node_id_from_seed

ROLE_DEFAULTS = {"knarr_node_memory": "256m", "knarr_node_ip": None, "knarr_node_state": "present",
                 "knarr_node_location": None}


def specs(hostvars, defaults, context_host=None, role_defaults=ROLE_DEFAULTS):
    return {s["label"]: s for s in f.knarr_node_specs(list(hostvars), hostvars, defaults, context_host, role_defaults)}


def b64(seed):
    return base64.b64encode(build_node_db(seed)).decode()


def test_the_context_hosts_own_value_does_not_leak_to_the_others():
    hostvars = {"a": {"knarr_node_ip": "172.21.0.200", "knarr_node_memory": "128m"}, "b": {}, "c": {}}
    # The run_once task runs on "a": its templated defaults are a's own values.
    got = specs(hostvars, {"ip": "172.21.0.200", "memory": "128m"}, context_host="a")
    assert got["a"]["ip"] == "172.21.0.200" and got["a"]["memory_bytes"] == 128 * 2 ** 20
    assert got["b"]["ip"] is None and got["b"]["memory_bytes"] == 256 * 2 ** 20
    assert got["c"]["ip"] is None and got["c"]["memory_bytes"] == 256 * 2 ** 20


def test_play_level_values_reach_hosts_without_their_own():
    hostvars = {"a": {"knarr_node_memory": "128m"}, "b": {}}
    # A play var (or role param) differs from a's inventory value: it is the play's, not a's.
    got = specs(hostvars, {"memory": "512m"}, context_host="a")
    assert got["a"]["memory_bytes"] == 128 * 2 ** 20 and got["b"]["memory_bytes"] == 512 * 2 ** 20
    # The context host has no value of its own: what it sees is the play's (or the role default).
    got = specs({"a": {}, "b": {"knarr_node_memory": "64m"}}, {"memory": "512m"}, context_host="a")
    assert got["a"]["memory_bytes"] == 512 * 2 ** 20 and got["b"]["memory_bytes"] == 64 * 2 ** 20


def test_labels_default_to_the_host_name_and_must_be_unique_and_safe():
    assert f.knarr_node_labels(["h1", "h2"], {"h1": {}, "h2": {"knarr_node_label": "beta"}}) == ["h1", "beta"]
    with pytest.raises(AnsibleFilterError, match="several hosts share knarr_node_label beta"):
        f.knarr_node_labels(["h1", "h2"], {"h1": {"knarr_node_label": "beta"}, "h2": {"knarr_node_label": "beta"}})
    with pytest.raises(AnsibleFilterError, match=r"host h1: node 'Bad_Label', field 'label'"):
        f.knarr_node_labels(["h1"], {"h1": {"knarr_node_label": "Bad_Label"}})


def test_states_split_the_hosts_per_host():
    hostvars = {"a": {}, "b": {"knarr_node_state": "absent"}, "c": {}}
    assert f.knarr_node_states(list(hostvars), hostvars, "present", "a", ROLE_DEFAULTS) == \
        {"present": ["a", "c"], "absent": ["b"]}
    # The first host's own "absent" does not decommission the others.
    hostvars = {"a": {"knarr_node_state": "absent"}, "b": {}}
    assert f.knarr_node_states(list(hostvars), hostvars, "absent", "a", ROLE_DEFAULTS) == \
        {"present": ["b"], "absent": ["a"]}
    # Extra vars are in every host's hostvars: all go.
    hostvars = {"a": {"knarr_node_state": "absent"}, "b": {"knarr_node_state": "absent"}}
    assert f.knarr_node_states(list(hostvars), hostvars, "absent", "a", ROLE_DEFAULTS)["absent"] == ["a", "b"]
    with pytest.raises(AnsibleFilterError, match="host b, field 'knarr_node_state': 'gone'"):
        f.knarr_node_states(["a", "b"], {"a": {}, "b": {"knarr_node_state": "gone"}}, "present", "a", ROLE_DEFAULTS)


def test_given_identities_are_validated_and_never_shared():
    seed = new_seed()
    hostvars = {"a": {"knarr_node_db_b64": b64(seed)}, "b": {}}
    assert set(specs(hostvars, {}, "a")) == {"a", "b"}
    with pytest.raises(AnsibleFilterError) as bad:
        specs({"a": {}, "b": {"knarr_node_db_b64": base64.b64encode(b"nope").decode()}}, {}, "a")
    assert "node 'b'" in str(bad.value) and "node_db_b64" in str(bad.value)
    with pytest.raises(AnsibleFilterError) as shared:
        specs({"a": {"knarr_node_db_b64": b64(seed)}, "b": {"knarr_node_db_b64": b64(seed)}}, {}, "a")
    message = str(shared.value)
    assert "node 'b', field 'knarr_node_db_b64'" in message and node_id_from_seed(seed) in message
    assert seed.hex() not in message and b64(seed) not in message


def test_bad_settings_name_the_node_and_the_field():
    with pytest.raises(AnsibleFilterError, match=r"node 'b'.*memory"):
        specs({"a": {}, "b": {"knarr_node_memory": "lots"}}, {}, "a")


def test_allocation_requests_carry_each_hosts_own_identity():
    seed = new_seed()
    hostvars = {"a": {"knarr_node_db_b64": b64(seed), "knarr_node_label": "alpha"}, "b": {"knarr_node_ip": "172.21.0.99"}}
    requests = f.knarr_allocation_requests(list(specs(hostvars, {}, "a").values()), list(hostvars), hostvars)
    assert requests == [
        dict(label="alpha", ip=None, location=None, nonce=None, node_db_b64=b64(seed)),
        dict(label="b", ip="172.21.0.99", location=None, nonce=None, node_db_b64=None),
    ]


def test_fleet_settings_must_be_the_same_for_every_node():
    role_defaults = dict(ROLE_DEFAULTS, knarr_node_registry="/var/lib/fenrir/fleet.db", knarr_node_subnet="172.21.0.0/24")
    # Set for the whole fleet (group_vars): fine.
    hostvars = {"a": {"knarr_node_registry": "/srv/fleet.db"}, "b": {"knarr_node_registry": "/srv/fleet.db"}}
    assert len(specs(hostvars, {"registry": "/srv/fleet.db"}, "a", role_defaults)) == 2
    # Set on one host only: the run would use it for all; refused, naming the field and the hosts.
    hostvars = {"a": {"knarr_node_registry": "/srv/fleet.db"}, "b": {}}
    with pytest.raises(AnsibleFilterError) as err:
        specs(hostvars, {"registry": "/srv/fleet.db"}, "a", role_defaults)
    assert "field 'knarr_node_registry'" in str(err.value)
    assert "host a has '/srv/fleet.db'" in str(err.value) and "host b has '/var/lib/fenrir/fleet.db'" in str(err.value)


def test_a_bad_setting_names_the_role_variable_and_host():
    with pytest.raises(AnsibleFilterError, match=r"node 'b', field 'node_port' \(variable knarr_node_port of host b\)"):
        specs({"a": {}, "b": {"knarr_node_port": "many"}}, {}, "a")


def test_labels_for_removal_accept_what_older_tools_made():
    assert f.knarr_node_labels(["h"], {"h": {"knarr_node_label": "Node_7"}}, removal=True) == ["Node_7"]
    with pytest.raises(AnsibleFilterError):
        f.knarr_node_labels(["h"], {"h": {"knarr_node_label": "Node_7"}})
