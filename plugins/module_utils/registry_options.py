# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options every module that reads or writes the fleet registry takes (documented once, in the
``fenrir.fleet.registry`` doc fragment), and the fleet's address pool (``fenrir.fleet.pool``)."""

from __future__ import annotations

REGISTRY_ARGS = dict(
    registry=dict(type="str", required=True, aliases=["db"],
                  deprecated_aliases=[dict(name="db", version="2.0.0", collection_name="fenrir.fleet")]),
    key_file=dict(type="path", no_log=False),
)

# gateway, pool_start and pool_end follow from the subnet unless given (pool_addresses).
POOL_ARGS = dict(
    subnet=dict(type="str", default="172.21.0.0/24"),
    gateway=dict(type="str"),
    pool_start=dict(type="str"),
    pool_end=dict(type="str"),
)


def registry_argument_spec(**extra):
    """The registry options plus a module's own (a fresh copy each time)."""
    spec = {k: dict(v) for k, v in REGISTRY_ARGS.items()}
    spec.update(extra)
    return spec


def pool_argument_spec(*names):
    """The pool options (all, or the ``names`` given), a fresh copy."""
    return {k: dict(v) for k, v in POOL_ARGS.items() if not names or k in names}


def pool_addresses(params):
    """(subnet, gateway, pool_start, pool_end) with what was not given derived from the subnet: the gateway is
    its first host address, the pool runs from the 10th address to the 7th from the end (172.21.0.10-249 in a
    /24). A subnet that is not a network is returned as given, for the caller to refuse by name."""
    import ipaddress
    subnet = params["subnet"]
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError:
        return subnet, params.get("gateway"), params.get("pool_start"), params.get("pool_end")
    first, last = int(net.network_address), int(net.broadcast_address)
    roomy = net.num_addresses > 32
    gateway = params.get("gateway") or str(ipaddress.IPv4Address(first + 1))
    start = params.get("pool_start") or str(ipaddress.IPv4Address(first + (10 if roomy else 2)))
    end = params.get("pool_end") or str(ipaddress.IPv4Address(last - (6 if roomy else 1)))
    return subnet, gateway, start, end


def registry_location(registry):
    """How results and messages name a registry: a file by its absolute path, a DSN without its password."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import registry_id
    return registry_id(registry)
