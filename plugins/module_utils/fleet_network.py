# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.fleet_network module: the fleet's bridge network, with a fixed subnet and gateway.

A network of that name that differs (subnet, gateway, driver), or a subnet that overlaps another network's, is
refused with what differs: the fleet's addresses are reserved in the registry against that subnet.
"""

from __future__ import annotations

import ipaddress

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (
    APIError, NotFound, docker_argument_spec, run_with_engine)
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_hosts import (
    engines_argument_spec, is_local, on_each_engine)
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import NETWORK_OPTION
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import pool_argument_spec

NAME = "fleet_network"
REQUIREMENTS = ("docker",)
ARGUMENT_SPEC = dict(argument_spec=docker_argument_spec(
    name=dict(NETWORK_OPTION),
    driver=dict(type="str", default="bridge"),
    labels=dict(type="dict"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    **dict(pool_argument_spec("subnet", "gateway"), **engines_argument_spec())
))


class NetworkError(FleetError):
    """A network that cannot be made as asked, or one that would clash."""

    kind = "network"


def _subnets(net):
    out = []
    for cfg in ((net.get("IPAM") or {}).get("Config") or []):
        if cfg.get("Subnet"):
            try:
                out.append((ipaddress.ip_network(cfg["Subnet"], strict=False), cfg.get("Gateway")))
            except ValueError:
                pass
    return out


def _drained(api, network_id, timeout=10.0):
    """The network, once endpoints of containers that no longer exist are gone.

    The engine releases a removed container's endpoint a moment after the removal returns; a
    network removed right after its last node (decommission, then network absent) must wait for it.
    """
    import time
    deadline = time.monotonic() + timeout
    while True:
        net = api.inspect_network(network_id)
        attached = list((net.get("Containers") or {}).keys())
        live = []
        for cid in attached:
            try:
                api.inspect_container(cid)
                live.append(cid)
            except NotFound:
                pass
        if live or not attached or time.monotonic() > deadline:
            return net
        time.sleep(0.1)


def view(net):
    if net is None:
        return None
    subnets = _subnets(net)
    return dict(name=net["Name"], id=net["Id"], driver=net.get("Driver"),
                subnet=str(subnets[0][0]) if subnets else None, gateway=subnets[0][1] if subnets else None,
                containers=len(net.get("Containers") or {}))


def ensure_network(api, params, check_mode):
    name = params["name"]
    state = params.get("state") or "present"
    try:
        subnet = ipaddress.IPv4Network(params["subnet"], strict=True)
    except ValueError as exc:
        raise NetworkError("network %s, field 'subnet': %s" % (name, exc))
    gateway = params.get("gateway") or str(next(subnet.hosts()))
    try:
        ipaddress.IPv4Address(gateway)
    except ValueError:
        raise NetworkError("network %s, field 'gateway': %r is not an IPv4 address" % (name, gateway))
    if ipaddress.IPv4Address(gateway) not in subnet:
        raise NetworkError("network %s, field 'gateway': %s is outside subnet %s" % (name, gateway, subnet))
    networks = api.networks()
    existing = next((n for n in networks if n["Name"] == name), None)
    if existing is not None and not (existing.get("IPAM") or {}).get("Config"):
        existing = api.inspect_network(existing["Id"])  # older engines list without IPAM
    before = view(existing)
    if state == "absent":
        if existing is None:
            return dict(changed=False, network=None, diff=dict(before=None, after=None))
        # Check mode looks without waiting; the listing does not carry the attached containers.
        existing = _drained(api, existing["Id"]) if not check_mode else api.inspect_network(existing["Id"])
        before = view(existing)
        if existing.get("Containers"):
            raise NetworkError("network %s still has %d containers attached; decommission them first"
                               % (name, len(existing["Containers"])))
        if not check_mode:
            try:
                api.remove_network(existing["Id"])
            except NotFound:
                pass
        return dict(changed=True, network=None, diff=dict(before=before, after=None))

    wanted = dict(name=name, driver=params.get("driver") or "bridge", subnet=str(subnet), gateway=gateway)
    if existing is not None:
        problems = []  # (field, what differs)
        if before["driver"] != wanted["driver"]:
            problems.append(("driver", "driver is %s, not %s" % (before["driver"], wanted["driver"])))
        if before["subnet"] != wanted["subnet"]:
            problems.append(("subnet", "subnet is %s, not %s" % (before["subnet"], wanted["subnet"])))
        elif before["gateway"] != wanted["gateway"]:
            problems.append(("gateway", "gateway is %s, not %s" % (before["gateway"], wanted["gateway"])))
        if problems:
            raise NetworkError("network %s, field %r: the existing Docker network of that name differs (%s); "
                               "remove it (docker network rm %s) or configure the fleet to match"
                               % (name, problems[0][0], "; ".join(p for _f, p in problems), name))
        return dict(changed=False, network=before, diff=dict(before=before, after=before))

    for other in networks:
        nets = _subnets(other)
        if not nets and other.get("Driver") in ("bridge", "macvlan", "ipvlan", "overlay"):
            nets = _subnets(api.inspect_network(other["Id"]))
        for other_subnet, _gw in nets:
            if other_subnet.version == 4 and other_subnet.overlaps(subnet):
                raise NetworkError("network %s, field 'subnet': %s overlaps %s of Docker network %s; choose another "
                                   "subnet" % (name, subnet, other_subnet, other["Name"]))
    if check_mode:
        return dict(changed=True, network=dict(wanted, id=None, containers=0), diff=dict(before=None, after=wanted))
    ipam = dict(Driver="default", Config=[dict(Subnet=str(subnet), Gateway=gateway)])
    labels = dict(params.get("labels") or {})
    labels.setdefault("fenrir.fleet.network", "true")
    try:
        created = api.create_network(name, driver=wanted["driver"], ipam=ipam, labels=labels, check_duplicate=True)
    except APIError as exc:
        raise NetworkError("network %s: Docker refused to create it: %s" % (name, exc.explanation or exc))
    after = view(api.inspect_network(created["Id"]))
    return dict(changed=True, network=after, diff=dict(before=None, after=after))


def on_engines(params, check_mode):
    """The network on every engine of ``engines``, all at once, each with its own subnet (a Docker host's /24 from
    the registry; the local engine's from ``subnet``/``gateway``).  An engine that cannot be reached or refuses is
    reported in ``failed_engines``, never fails the others."""
    def one(engine, client):
        wanted = dict(params) if is_local(engine) else dict(params, subnet=engine.get("subnet"),
                                                            gateway=engine.get("gateway"))
        return ensure_network(client.api, wanted, check_mode)

    got, failed = on_each_engine(params, params["engines"], one, skip=params.get("failed_engines"))
    changed = {name: g for name, g in got.items() if g["changed"]}
    return dict(changed=bool(changed), networks={name: g["network"] for name, g in got.items()},
                failed_engines=failed, diff=dict(before={name: g["diff"]["before"] for name, g in changed.items()},
                                                 after={name: g["diff"]["after"] for name, g in changed.items()}))


def run(params, check_mode=False, diff=False):
    """The module: raises ModuleFailure naming the network and the field."""
    if params.get("engines"):
        result = on_engines(params, check_mode)
        if not diff:
            result.pop("diff", None)
        return result
    return run_with_engine(params, lambda client: ensure_network(client.api, params, check_mode), diff=diff)
