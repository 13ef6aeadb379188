"""fenrir.fleet.role_settings: which variables it gathers, how their names come out, and what a failure says.

(That the values are what Ansible's precedence gives every host is tests/unit/roles/test_precedence.py and
test_tenants_precedence.py: real ansible-playbook runs of the roles that use it.)
"""

import pytest
from ansible.errors import AnsibleError, AnsibleUndefinedVariable

from ansible_collections.fenrir.fleet.plugins.action.role_settings import gather


def render(value):
    """A stand-in for the task's templar: '{{ x }}' is undefined, '<upper>' upper-cases."""
    if value == "{{ x }}":
        raise AnsibleUndefinedVariable("'x' is undefined")
    return value.upper() if isinstance(value, str) and value.startswith("<") else value


def test_only_the_prefixed_variables_without_the_excluded_and_without_the_prefix():
    variables = {"knarr_node_label": "alpha", "knarr_node_memory": "<256m>", "knarr_node_results": {"a": 1},
                 "knarr_nodes": "a group's name, not a setting", "tenants_spec": {}, "inventory_hostname": "h1",
                 "knarr_node_config_overrides": {"node": {"x": 1}}}
    got = gather(variables, "knarr_node_", {"knarr_node_results"}, render)
    assert got == {"label": "alpha", "memory": "<256M>", "config_overrides": {"node": {"x": 1}}}
    assert list(got) == sorted(got)  # in name order, whatever the order of the variables


def test_nothing_to_gather_is_an_empty_dict():
    assert gather({"inventory_hostname": "h1"}, "knarr_node_", set(), render) == {}


def test_a_value_that_cannot_be_rendered_names_its_variable_and_not_the_others():
    with pytest.raises(AnsibleError) as err:
        gather({"knarr_node_label": "alpha", "knarr_node_db_b64": "{{ x }}"}, "knarr_node_", set(), render)
    assert "variable knarr_node_db_b64" in str(err.value) and "'x' is undefined" in str(err.value)
    assert "alpha" not in str(err.value)
