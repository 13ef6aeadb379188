# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.tenant_info module: every tenant's container beside its registry record; reads only."""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils import tenants
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import docker_argument_spec
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import dsn_password
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import registry_argument_spec
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_spec import DEFAULT_PREFIX

NAME = "tenant_info"
REQUIREMENTS = ("docker", "cryptography")
ARGUMENT_SPEC = dict(argument_spec=docker_argument_spec(
    tenant_ids=dict(type="list", elements="str"),
    prefix=dict(type="str", default=DEFAULT_PREFIX),
    **registry_argument_spec()
))


def secret_values(params):
    password = dsn_password(params.get("registry") or "")
    return {password} if password else set()


def run(params, check_mode=False, diff=False):
    return tenants.run_operation(params, tenants.status)
