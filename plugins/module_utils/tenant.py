# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.tenant module: tenant workloads, one limited container per tenant, recorded in the registry.

The work is in tenants.py (converge, destroy) and tenant_engine.py; records in tenant_store.py. This file is the
contract (options, secrets) and is also read on the controller by the tenants role's filter for the options'
defaults: the work, with the Docker SDK and the registry, is imported when the module runs, not with the contract.
"""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_options import docker_argument_spec
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import registry_argument_spec
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_spec import DEFAULT_PREFIX
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_spec import secret_values as spec_secrets

NAME = "tenant"
REQUIREMENTS = ("docker", "cryptography")
ARGUMENT_SPEC = dict(argument_spec=docker_argument_spec(
    tenants=dict(type="list", elements="raw", default=[]),
    remove=dict(type="list", elements="str", default=[]),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    prefix=dict(type="str", default=DEFAULT_PREFIX),
    bind_address=dict(type="str", default="0.0.0.0"),
    parallelism=dict(type="int", default=4),
    start_timeout=dict(type="int", default=60),
    start_settle=dict(type="float", default=2.0),
    **registry_argument_spec()
))


def secret_values(params):
    """Env secrets of the specs and a registry DSN's password: never in what the module returns or logs."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import dsn_password

    found = spec_secrets([t for t in params.get("tenants") or [] if isinstance(t, dict)])
    password = dsn_password(params.get("registry") or "")
    if password:
        found.add(password)
    return found


def run(params, check_mode=False, diff=False):
    from ansible_collections.fenrir.fleet.plugins.module_utils import tenants

    if params["state"] == "absent" and params.get("remove"):
        raise ModuleFailure("remove is for state=present; with state=absent, list the tenants in tenants")
    operation = tenants.converge if params["state"] == "present" else tenants.destroy
    result = tenants.run_operation(params, operation, check_mode, diff)
    if not diff:
        result.pop("diff", None)
    return result
