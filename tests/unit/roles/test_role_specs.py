"""Each setting is defined once: role variables in meta/argument_specs.yml agree with defaults/main.yml, the
knarr_node role's node settings are the knarr_container module's node options (name, type, choices), and the
tenants role's variables that are fenrir.fleet.tenant options have that option's type -- the modules' defaults are
the only ones written down."""

import os

import pytest
import yaml

from ansible_collections.fenrir.fleet.plugins.filter import tenants as tenant_filters
from ansible_collections.fenrir.fleet.plugins.filter.knarr import FLEET_SETTINGS, ROLE_ONLY
from ansible_collections.fenrir.fleet.plugins.module_utils import (
    fleet_placement, fleet_registry, knarr_container, knarr_image, tenant)
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import NODE_OPTIONS

ROLES_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles")
ROLES = sorted(r for r in os.listdir(ROLES_DIR) if not r.startswith("."))
# Defaults that are templates, documented in words instead (the spec cannot hold a template).
TEMPLATED = {"knarr_node_label": "{{ inventory_hostname }}",
             "knarr_node_docker_tls_dir": "{{ playbook_dir | dirname }}/state/pki/controller",
             "docker_host_registry": "{{ knarr_node_registry | default('/var/lib/fenrir/fleet.db') }}",
             "docker_host_ca_dir": "{{ playbook_dir | dirname }}/state/pki",
             "docker_host_operator_bundle_dir": "{{ docker_host_ca_dir }}/operator"}
# Role variables that are module options with the same meaning, and the module that defines them.
FLEET_OPTIONS = dict(registry_key_file=("key_file", fleet_registry), network=("network", knarr_container),
                     subnet=("subnet", fleet_registry), gateway=("gateway", fleet_registry),
                     pool_start=("pool_start", fleet_registry), pool_end=("pool_end", fleet_registry),
                     parallelism=("parallelism", knarr_container), wait=("wait", knarr_container),
                     boot_timeout=("boot_timeout", knarr_container),
                     provisioner_db_b64=("provisioner_db_b64", knarr_container),
                     docker_tls_dir=("tls_dir", fleet_placement), port_pool_start=("port_start", fleet_placement),
                     port_pool_end=("port_end", fleet_placement), image_source=("source", knarr_image),
                     image_archive=("archive", knarr_image), prune=("prune", fleet_placement),
                     upgrade_batch=("upgrade_batch", knarr_container),
                     upgrade_rollback=("upgrade_rollback", knarr_container))


def load(role, path):
    with open(os.path.join(ROLES_DIR, role, path)) as fh:
        return yaml.safe_load(fh) or {}


def options(role):
    return load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]


@pytest.mark.parametrize("role", ROLES)
def test_defaults_are_documented_with_the_same_value(role):
    defaults = load(role, "defaults/main.yml")
    specs = load(role, "meta/argument_specs.yml")["argument_specs"]
    opts = specs["main"]["options"]
    assert set(defaults) <= set(opts), "a default that is not documented"
    for name, spec in opts.items():
        assert name.startswith(role + "_"), "%s: role variables carry the role's prefix" % name
        assert spec.get("description"), "%s has no description" % name
        if name in TEMPLATED:
            assert defaults[name] == TEMPLATED[name] and "default" not in spec
        elif name in defaults:
            assert spec.get("default") == defaults[name], name
        else:
            assert "default" not in spec, "%s: a default in the spec but not in defaults/main.yml" % name
    for entry, spec in specs.items():  # every entry point documents the same variables
        assert spec["options"] == opts, entry


def test_node_settings_are_the_modules_node_options():
    opts = options("knarr_node")
    node_vars = {name[len("knarr_node_"):] for name in opts} - set(ROLE_ONLY) - set(FLEET_SETTINGS)
    assert node_vars == set(NODE_OPTIONS) - {"label"}
    for name in node_vars:
        role, module = opts["knarr_node_" + name], NODE_OPTIONS[name]
        assert role["type"] == module["type"], name
        assert role.get("choices") == module.get("choices"), name
        assert role.get("elements") == module.get("elements"), name
        assert "default" not in role, "%s: its default is the module's, written once" % name


def test_fleet_settings_are_module_options_of_the_same_type():
    opts = options("knarr_node")
    for name in FLEET_SETTINGS:
        if name == "registry":
            continue
        option, logic = FLEET_OPTIONS[name]
        assert opts["knarr_node_" + name]["type"] == logic.ARGUMENT_SPEC["argument_spec"][option]["type"], name
        assert opts["knarr_node_" + name].get("choices") == logic.ARGUMENT_SPEC["argument_spec"][option].get(
            "choices"), name
        assert "default" not in opts["knarr_node_" + name], name


def test_every_role_variable_is_known_to_the_plan():
    known = set(NODE_OPTIONS) | set(ROLE_ONLY) | set(FLEET_SETTINGS)
    assert {name[len("knarr_node_"):] for name in options("knarr_node")} | {"results"} == known


def test_tenant_settings_that_are_module_options_have_its_type_and_no_default_of_their_own():
    opts, defaults = options("tenants"), load("tenants", "defaults/main.yml")
    module = tenant.ARGUMENT_SPEC["argument_spec"]
    for name, option in tenant_filters.MODULE_OPTIONS.items():
        role = opts["tenants_" + name]
        assert role["type"] == module[option]["type"], name
        assert role.get("choices") == module[option].get("choices"), name
        if name == "registry":  # required by the module: the role names the fleet's
            assert module[option].get("required") and role["default"] == defaults["tenants_registry"]
            continue
        assert "default" not in role and "tenants_" + name not in defaults, "%s: its default is the module's" % name
        assert "Unset: the default of O(fenrir.fleet.tenant#module:%s)" % option in role["description"], name
        assert tenant_filters.module_default(name) == module[option].get("default"), name


def test_every_tenants_role_variable_is_known_to_the_plan():
    known = set(tenant_filters.HOST_SETTINGS) | set(tenant_filters.PLAY_SETTINGS)
    assert {name[len("tenants_"):] for name in options("tenants")} == known
    assert not set(tenant_filters.HOST_SETTINGS) & set(tenant_filters.PLAY_SETTINGS)
    assert set(tenant_filters.MODULE_OPTIONS) <= set(tenant_filters.PLAY_SETTINGS)
