# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.fleet_status module: the registry beside the Docker engine (drift); the logic is in drift.py."""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils import drift
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import docker_argument_spec, make_client
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_hosts import engines_argument_spec
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import NETWORK_OPTION, NODE_OPTIONS
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import REGISTRY_ARGS

NAME = "fleet_status"
REQUIREMENTS = ("docker", "cryptography")
ARGUMENT_SPEC = dict(argument_spec=docker_argument_spec(
    network=dict(NETWORK_OPTION),
    probe=dict(type="bool", default=False),
    port=dict(NODE_OPTIONS["port"], aliases=["node_port"],
              deprecated_aliases=[dict(name="node_port", version="2.0.0", collection_name="fenrir.fleet")]),
    probe_timeout=dict(type="float", default=drift.DEFAULT_PROBE_TIMEOUT),
    stale_after=dict(type="float", default=drift.DEFAULT_STALE_AFTER),
    release_stale=dict(type="bool", default=False),
    inventory=dict(type="list", elements="str"),
    **dict({k: dict(v) for k, v in REGISTRY_ARGS.items()}, **engines_argument_spec())
))


def run(params, check_mode=False, diff=False):
    try:
        result = drift.fleet_status(params, make_client, check_mode=check_mode)
    except FleetError as exc:
        raise ModuleFailure(str(exc))
    if not diff:
        result.pop("diff", None)
    return result
