# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One definition per module of its arguments, and one way to run it.

A module's ``main()`` and its controller-side action plugin both use :data:`SPECS` and
:func:`execute`, so the two paths cannot drift apart.
"""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (
    DockerException, docker_argument_spec, make_client)
from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_ops import (
    FleetError, node_identity, reconcile_containers, registry_node)
from ansible_collections.fenrir.fleet.plugins.module_utils.network import NetworkError, ensure_network

_NODE_OPTIONS = dict(
    label=dict(type="str"),
    ip=dict(type="str"),
    location=dict(type="str"),
    nonce=dict(type="str"),
    server_id=dict(type="str"),
    provider=dict(type="str", default="docker"),
    node_db_b64=dict(type="str", no_log=True),
    status=dict(type="str", choices=["provisioning", "running", "online", "failed"]),
    reason=dict(type="str"),
    node_id=dict(type="str"),
    container_id=dict(type="str"),
)


def _fleet_node_spec():
    node_options = {k: dict(v) for k, v in _NODE_OPTIONS.items()}
    node_options["label"]["required"] = True
    return dict(
        argument_spec=dict(
            db=dict(type="path", required=True),
            key_file=dict(type="path", no_log=False),
            nodes=dict(type="list", elements="dict", options=node_options),
            labels=dict(type="list", elements="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            identity=dict(type="bool", default=True),
            subnet=dict(type="str", default="172.21.0.0/24"),
            gateway=dict(type="str", default="172.21.0.1"),
            pool_start=dict(type="str", default="172.21.0.10"),
            pool_end=dict(type="str", default="172.21.0.249"),
            **{k: dict(v) for k, v in _NODE_OPTIONS.items()}
        ),
        mutually_exclusive=[("label", "nodes", "labels")],
        required_one_of=[("label", "nodes", "labels")],
    )


SPECS = dict(
    fleet_node=_fleet_node_spec(),
    knarr_container=dict(
        argument_spec=docker_argument_spec(
            registry=dict(type="path", required=True),
            key_file=dict(type="path", no_log=False),
            nodes=dict(type="list", elements="dict"),
            labels=dict(type="list", elements="str"),
            state=dict(type="str", choices=["started", "probed", "absent"], default="started"),
            parallelism=dict(type="int", default=8),
            wait=dict(type="bool", default=True),
            boot_timeout=dict(type="int", default=60),
        ),
        mutually_exclusive=[("nodes", "labels")],
        required_one_of=[("nodes", "labels")],
        required_if=[("state", "started", ("nodes",)), ("state", "probed", ("nodes",))],
    ),
    node_identity=dict(
        argument_spec=docker_argument_spec(
            container=dict(type="str"),
            path=dict(type="str", default="/opt/knarr/node.db"),
            mode=dict(type="raw", default="0600"),
            node_db_b64=dict(type="str", no_log=True),
            registry=dict(type="path"),
            key_file=dict(type="path", no_log=False),
            label=dict(type="str"),
            generate=dict(type="bool", default=True),
            return_content=dict(type="bool", default=False),
        ),
        required_by=dict(registry=["label"]),
    ),
    fleet_network=dict(argument_spec=docker_argument_spec(
        name=dict(type="str", default="fenrir-fleet"),
        subnet=dict(type="str", default="172.21.0.0/24"),
        gateway=dict(type="str"),
        driver=dict(type="str", default="bridge"),
        images=dict(type="raw"),
        labels=dict(type="dict"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )),
)


class ModuleFailure(Exception):
    """The module fails; ``result`` is what it returns with the failure."""

    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = dict(result or {}, msg=msg)


def secret_values(name, params):
    """Values that must never appear in a result: node identities inside ``nodes``, and secrets
    (cockpit.auth_token, ...) in their knarr.toml overrides."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import secret_values as toml_secrets
    values = set()
    for node in params.get("nodes") or []:
        if isinstance(node, dict) and node.get("node_db_b64"):
            values.add(node["node_db_b64"])
        if isinstance(node, dict):
            values |= toml_secrets(node.get("config_overrides"))
    if params.get("node_db_b64"):
        values.add(params["node_db_b64"])
    return values


def execute(name, params, check_mode, diff):
    """Run module ``name`` with validated ``params``; returns its result or raises ModuleFailure."""
    try:
        if name == "fleet_node":
            result = registry_node(params, check_mode)
        elif name == "knarr_container":
            client = make_client(params, max_pool_size=max(8, params["parallelism"]))
            result = reconcile_containers(dict(params, _diff=diff), client, check_mode)
        elif name == "fleet_network":
            result = ensure_network(make_client(params).api, params, check_mode)
        elif name == "node_identity":
            result = node_identity(params, make_client(params) if params.get("container") else None, check_mode)
        else:  # pragma: no cover - programming error
            raise ValueError("unknown module %s" % name)
    except (FleetError, NetworkError, ValueError) as exc:
        raise ModuleFailure(str(exc))
    except DockerException as exc:
        raise ModuleFailure("Docker engine error: %s" % exc)
    if not diff:
        result.pop("diff", None)
    if result.get("failed_nodes"):
        raise ModuleFailure(result.pop("msg", "some nodes failed"), result)
    return result


def run_module(module, name):
    """main() of a module: execute and exit with the result or the failure."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import require_docker
    if name != "fleet_node" and not (name == "node_identity" and not module.params.get("container")):
        require_docker(module)
    for value in secret_values(name, module.params):
        module.no_log_values.add(value)
    try:
        result = execute(name, module.params, module.check_mode, module._diff)
    except ModuleFailure as exc:
        module.fail_json(**exc.result)
    module.exit_json(**result)
