"""Every role variable is documented in meta/argument_specs.yml with the default defaults/main.yml gives it."""

import os

import pytest
import yaml

ROLES_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles")
ROLES = sorted(r for r in os.listdir(ROLES_DIR) if not r.startswith("."))
# Defaults that are templates, documented in words instead (the spec cannot hold a template).
TEMPLATED = {"knarr_node_label": "{{ inventory_hostname }}",
             "docker_host_ca_dir": "{{ playbook_dir | dirname }}/state/pki",
             "docker_host_operator_bundle_dir": "{{ docker_host_ca_dir }}/operator"}


def load(role, path):
    with open(os.path.join(ROLES_DIR, role, path)) as fh:
        return yaml.safe_load(fh) or {}


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_agree(role):
    defaults = load(role, "defaults/main.yml")
    specs = load(role, "meta/argument_specs.yml")["argument_specs"]
    options = specs["main"]["options"]
    assert set(defaults) == set(options), "documented but no default, or default but undocumented"
    for name, value in defaults.items():
        assert name.startswith(role + "_"), "%s: role variables carry the role's prefix" % name
        assert options[name].get("description"), "%s has no description" % name
        if name in TEMPLATED:
            assert value == TEMPLATED[name] and "default" not in options[name]
        else:
            assert options[name].get("default") == value, name
    # Every entry point documents the same variables.
    for entry, spec in specs.items():
        assert spec["options"] == options, entry
