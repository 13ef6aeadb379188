# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A knarr node's settings: the one definition of each, with its default, and the checks types cannot express.

:data:`NODE_OPTIONS` is the argument spec of one entry of ``fenrir.fleet.knarr_container``'s ``nodes`` option,
and the only place a node setting's default is written. The knarr_node role's variables are these names with
the ``knarr_node_`` prefix (``knarr_node_memory`` is ``memory``); a variable left unset takes the default here.
:func:`normalize_node` adds what Ansible's type checks cannot say (a port range, a memory size, a host:port)
and the derived values (``memory_bytes``, ``server_id``).
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import container_name, validate_label

RESTART_POLICIES = ["no", "always", "on-failure", "unless-stopped"]
NETWORK_MODES = ["bridge", "host"]
# knarr_node_docker_host: the name of the controller's own engine (a Docker host of the fleet is named as in the
# registry's hosts, i.e. its inventory host name in docker_hosts).
LOCAL_ENGINE = "local"
DOCKER_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}$")

NODE_OPTIONS = dict(
    label=dict(type="str", required=True),
    location=dict(type="str"),
    ip=dict(type="str"),
    nonce=dict(type="str"),
    image=dict(type="str", default="knarr-cluster-node:latest"),
    memory=dict(type="raw", default="256m"),
    pids_limit=dict(type="int", default=50),
    cpus=dict(type="float"),
    read_only=dict(type="bool", default=False),
    restart_policy=dict(type="str", default="unless-stopped", choices=RESTART_POLICIES),
    port=dict(type="int", default=9010),
    sidecar_port=dict(type="int", default=9011),
    jurisdiction=dict(type="str", default="eu"),
    cockpit_port=dict(type="int", default=8080),
    cockpit_bind=dict(type="str", default="127.0.0.1"),
    bootstrap=dict(type="list", elements="str", default=[]),
    upnp=dict(type="bool", default=False),
    provisioner_node_id=dict(type="str"),
    provisioner_endpoint=dict(type="str", default="172.21.0.1:9040"),
    initial_credit=dict(type="float", default=100000.0),
    min_balance=dict(type="float", default=-100000.0),
    echo_source=dict(type="str"),
    echo_price=dict(type="float", default=0.0),
    echo_tags=dict(type="list", elements="str", default=["echo", "fenrir"]),
    config_overrides=dict(type="dict", default={}),
    docker_host=dict(type="str"),
    network_mode=dict(type="str", default="bridge", choices=NETWORK_MODES),
)
# The fleet's bridge network (one per Docker host): a fleet setting, not a node's.
NETWORK_OPTION = dict(type="str", default="fenrir-fleet")
# Set by normalize_node; a node given back to it keeps them.
DERIVED = ("memory_bytes", "server_id", "nano_cpus")
# Settings whose change needs a new container (the rest are files in it).
CONTAINER_SETTINGS = ("image", "memory_bytes", "pids_limit", "restart_policy", "nano_cpus", "read_only")
# What every node container gets, whatever its settings (CIS Docker Benchmark 4.1, 5.3, 5.25, 5.10/5.11 with the
# limits above): the node image's unprivileged user, no capability at all, no privilege gained through exec,
# bounded logs.  Part of the container digest, so a container made without them is recreated.
NODE_USER = "10001:10001"
LOG_MAX_SIZE = "10m"
LOG_MAX_FILE = "3"
HARDENING = dict(user=NODE_USER, cap_drop=["ALL"], cap_add=[], security_opt=["no-new-privileges"], privileged=False,
                 log=["json-file", LOG_MAX_SIZE, LOG_MAX_FILE])
# With read_only: the root filesystem is read-only, the node's directory is a volume of its own (filled from the
# image, removed with the container) and /tmp a small tmpfs.
DATA_DIR = "/opt/knarr"
TMPFS = {"/tmp": "rw,noexec,nosuid,nodev,size=16m"}

HEX_RE = re.compile(r"^[0-9a-f]{16,64}$")
_MEM_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def with_defaults(raw):
    """A node's settings as the module sees them: validated against NODE_OPTIONS, defaults filled.

    For callers outside a module (the benchmark, tests); a module's nodes arrive validated already.
    """
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    label = raw.get("label") if isinstance(raw, dict) else None
    if not isinstance(raw, dict):
        raise SpecError(None, "nodes", "each node must be a mapping, got %s" % type(raw).__name__)
    given = {k: v for k, v in raw.items() if k not in DERIVED}
    result = ArgumentSpecValidator(NODE_OPTIONS).validate(given)
    if result.error_messages:
        unsupported = sorted(result.unsupported_parameters)
        field = unsupported[0] if unsupported else _field_of(result.error_messages[0])
        raise SpecError(label, field, "; ".join(result.error_messages))
    return result.validated_parameters


def _field_of(message):
    m = re.search(r"argument '([^']+)'|parameters?: ([a-z_]+)|value of ([a-z_]+) must", message)
    return next((g for g in m.groups() if g), None) if m else None


def parse_memory(value, label="?"):
    """Bytes of a size such as 256m, 1g or 268435456; Docker's minimum is 6 MiB."""
    if isinstance(value, int) and not isinstance(value, bool):
        num = value
    else:
        m = re.match(r"^\s*(\d+)\s*([bkmg]?)i?b?\s*$", str(value).lower())
        if not m or isinstance(value, bool):
            raise SpecError(label, "memory", "%r is not a size such as 256m or 268435456" % (value,))
        num = int(m.group(1)) * _MEM_UNITS[m.group(2)]
    if num < 6 * 1024 ** 2:
        raise SpecError(label, "memory", "%r is below Docker's minimum of 6 MiB" % (value,))
    return num


def _port(node, field, allow_zero=True):
    value = node[field]
    if isinstance(value, bool) or not isinstance(value, int) or not (0 if allow_zero else 1) <= value <= 65535:
        raise SpecError(node["label"], field, "%r is not a port number%s" % (value, "" if allow_zero else " (1-65535)"))


def check_hostport(label, field, value):
    if not isinstance(value, str) or ":" not in value:
        raise SpecError(label, field, "%r is not host:port" % (value,))
    host, dummy, port = value.rpartition(":")
    if not host or not port.isdecimal() or not 0 < int(port) < 65536 or any(c in host for c in " \t\r\n\"'[]"):
        raise SpecError(label, field, "%r is not host:port" % (value,))
    return value


def normalize_node(node, validated=False):
    """Check one node's settings beyond their types and add the derived values; raises SpecError.

    ``validated``: the settings come from a module's argument spec already (types checked, defaults filled).
    Normalising a normalised node gives the same node.
    """
    node = copy.deepcopy(node if validated else with_defaults(node))
    label = validate_label(node.get("label"))
    if node["location"] is not None and len(node["location"]) > 128:
        raise SpecError(label, "location", "must be a string of at most 128 characters")
    if node["ip"] is not None:
        try:
            node["ip"] = str(ipaddress.IPv4Address(node["ip"]))
        except ValueError:
            raise SpecError(label, "ip", "%r is not an IPv4 address" % (node["ip"],))
    _port(node, "port", allow_zero=False)
    _port(node, "sidecar_port")
    _port(node, "cockpit_port")
    from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import is_loopback
    if not is_loopback(node["cockpit_bind"]):
        raise SpecError(label, "cockpit_bind", "%r is not a loopback address; the cockpit (the node's admin API) only "
                        "listens on loopback inside its container" % (node["cockpit_bind"],))
    if isinstance(node["pids_limit"], bool) or node["pids_limit"] < 1:
        raise SpecError(label, "pids_limit", "%r is not a positive integer" % (node["pids_limit"],))
    node["memory_bytes"] = parse_memory(node["memory"], label)
    cpus = node.get("cpus")
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0.01 <= cpus <= 1024):
        raise SpecError(label, "cpus", "%r is not a number of CPUs from 0.01 up (Docker's --cpus)" % (cpus,))
    node["nano_cpus"] = int(round(cpus * 1e9)) if cpus is not None else 0
    for peer in node["bootstrap"]:
        check_hostport(label, "bootstrap", peer)
    pid = node["provisioner_node_id"]
    if pid is not None and not HEX_RE.fullmatch(pid):
        raise SpecError(label, "provisioner_node_id", "must be a lowercase hex node id of 16 to 64 characters")
    check_hostport(label, "provisioner_endpoint", node["provisioner_endpoint"])
    if not node["image"] or any(c.isspace() for c in node["image"]):
        raise SpecError(label, "image", "%r is not a valid image name" % (node["image"],))
    host = node.get("docker_host")
    if host is not None and not DOCKER_HOST_RE.fullmatch(host):
        raise SpecError(label, "docker_host", "%r is not the name of a Docker host of the fleet (a host of "
                        "docker_hosts, or %r for the controller's own engine)" % (host, LOCAL_ENGINE))
    node["server_id"] = container_name(label)
    if node["config_overrides"]:
        from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import check_overrides
        check_overrides(label, node["config_overrides"], dict(node, config_overrides={}))
    return node


def container_digest(node, network):
    """A stable digest of the container-level settings and the hardening every node container gets (a change of any
    of them needs a new container)."""
    settings = dict({k: node[k] for k in CONTAINER_SETTINGS}, network=network, hardening=HARDENING)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
