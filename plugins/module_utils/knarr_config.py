# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a knarr node is made of: its validated spec, its knarr.toml (as data, then TOML), its files.

``knarr.toml`` is built as a dict and serialised by a real TOML writer (tomli_w), so no value -- a
quote, a newline, a bracket -- can change the file's structure.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re

LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,54}[a-z0-9])?$")
HEX_RE = re.compile(r"^[0-9a-f]{16,64}$")
CONFIG_DIR = "/opt/knarr"

ECHO_SOURCE = '''\
"""Echo skill: proof of life for a fenrir.fleet knarr node."""


async def handle(input_data: dict) -> dict:
    return {"text": input_data["text"]}
'''

# Defaults of a node spec; the knarr_node role documents each in meta/argument_specs.yml.
SPEC_DEFAULTS = dict(
    location=None,
    ip=None,
    nonce=None,
    image="knarr-cluster-node:latest",
    network="fenrir-fleet",
    memory="256m",
    pids_limit=50,
    restart_policy="unless-stopped",
    node_port=9010,
    sidecar_port=9011,
    jurisdiction="eu",
    cockpit_port=8080,
    cockpit_bind="127.0.0.1",
    bootstrap=[],
    upnp=False,
    provisioner_node_id=None,
    provisioner_endpoint="172.21.0.1:9040",
    initial_credit=100000.0,
    min_balance=-100000.0,
    echo_source=None,
    echo_price=0.0,
    echo_tags=["echo", "fenrir"],
    config_overrides={},
)
DERIVED = ("memory_bytes", "server_id", "knarr_toml")
RESTART_POLICIES = ("no", "always", "on-failure", "unless-stopped")
_MEM_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


class SpecError(Exception):
    """A node spec field that cannot be used.  Names the node and the field."""

    def __init__(self, label, field, message):
        self.label = label
        self.field = field
        self.message = message
        super().__init__("node %r, field %r: %s" % (label, field, message))


# What Docker accepts after "fenrir-" in a container name: enough to decommission a node whose label an
# older tool chose (the original skill did not check labels), never enough to provision one.
REMOVABLE_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,56}$")


def validate_label(label, removal=False):
    """A label the collection provisions under; with ``removal``, any label a fenrir container can carry."""
    if removal and isinstance(label, str) and REMOVABLE_LABEL_RE.fullmatch(label):
        return label
    if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
        raise SpecError(label, "label", "must be 1-56 characters of a-z, 0-9 and '-', starting and ending with a "
                        "letter or digit (it becomes the container name fenrir-<label> and a DNS name)")
    return label


def parse_memory(value, label="?"):
    if isinstance(value, int) and not isinstance(value, bool):
        num = value
    else:
        m = re.match(r"^\s*(\d+)\s*([bkmg]?)i?b?\s*$", str(value).lower())
        if not m:
            raise SpecError(label, "memory", "%r is not a size such as 256m or 268435456" % (value,))
        num = int(m.group(1)) * _MEM_UNITS[m.group(2)]
    if num < 6 * 1024 ** 2:
        raise SpecError(label, "memory", "%r is below Docker's minimum of 6 MiB" % (value,))
    return num


def _port(spec, field):
    value = spec[field]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise SpecError(spec["label"], field, "%r is not a port number" % (value,))
    return value


def _hostport(label, field, value):
    if not isinstance(value, str) or ":" not in value:
        raise SpecError(label, field, "%r is not host:port" % (value,))
    host, _, port = value.rpartition(":")
    if not host or not port.isdecimal() or not 0 < int(port) < 65536 or any(c in host for c in " \t\r\n\"'[]"):
        raise SpecError(label, field, "%r is not host:port" % (value,))
    return value


def normalize_spec(raw):
    """Fill defaults and validate every field of one node spec; raises SpecError."""
    if not isinstance(raw, dict):
        raise SpecError(None, "node", "each node must be a mapping, got %s" % type(raw).__name__)
    label = validate_label(raw.get("label"))
    raw = {k: v for k, v in raw.items() if k not in DERIVED}  # normalising twice gives the same spec
    unknown = set(raw) - set(SPEC_DEFAULTS) - {"label", "node_db_b64"}
    if unknown:
        raise SpecError(label, sorted(unknown)[0], "unknown field (known: %s)" % ", ".join(sorted(SPEC_DEFAULTS)))
    spec = copy.deepcopy(SPEC_DEFAULTS)
    spec.update({k: v for k, v in raw.items() if v is not None})
    spec["label"] = label
    if spec["location"] is not None and (not isinstance(spec["location"], str) or len(spec["location"]) > 128):
        raise SpecError(label, "location", "must be a string of at most 128 characters")
    if spec["ip"] is not None:
        try:
            spec["ip"] = str(ipaddress.IPv4Address(spec["ip"]))
        except ValueError:
            raise SpecError(label, "ip", "%r is not an IPv4 address" % (spec["ip"],))
    for field in ("node_port", "sidecar_port", "cockpit_port"):
        _port(spec, field)
    if spec["node_port"] == 0:
        raise SpecError(label, "node_port", "the node port cannot be 0")
    if isinstance(spec["pids_limit"], bool) or not isinstance(spec["pids_limit"], int) or spec["pids_limit"] < 1:
        raise SpecError(label, "pids_limit", "%r is not a positive integer" % (spec["pids_limit"],))
    spec["memory_bytes"] = parse_memory(spec["memory"], label)
    if spec["restart_policy"] not in RESTART_POLICIES:
        raise SpecError(label, "restart_policy", "%r is not one of %s" % (spec["restart_policy"],
                                                                          ", ".join(RESTART_POLICIES)))
    if not isinstance(spec["bootstrap"], list):
        raise SpecError(label, "bootstrap", "must be a list of host:port")
    for peer in spec["bootstrap"]:
        _hostport(label, "bootstrap", peer)
    pid = spec["provisioner_node_id"]
    if pid is not None and (not isinstance(pid, str) or not HEX_RE.fullmatch(pid)):
        raise SpecError(label, "provisioner_node_id", "must be a lowercase hex node id of 16 to 64 characters")
    _hostport(label, "provisioner_endpoint", spec["provisioner_endpoint"])
    for field in ("initial_credit", "min_balance", "echo_price"):
        if isinstance(spec[field], bool) or not isinstance(spec[field], (int, float)):
            raise SpecError(label, field, "%r is not a number" % (spec[field],))
        spec[field] = float(spec[field])
    if not isinstance(spec["echo_tags"], list) or not all(isinstance(t, str) for t in spec["echo_tags"]):
        raise SpecError(label, "echo_tags", "must be a list of strings")
    if spec["echo_source"] is not None and not isinstance(spec["echo_source"], str):
        raise SpecError(label, "echo_source", "must be Python source text")
    if not isinstance(spec["config_overrides"], dict):
        raise SpecError(label, "config_overrides", "must be a mapping of knarr.toml tables")
    for key in ("image", "network"):
        if not isinstance(spec[key], str) or not spec[key] or any(c.isspace() for c in spec[key]):
            raise SpecError(label, key, "%r is not a valid name" % (spec[key],))
    spec["server_id"] = "fenrir-%s" % label
    if spec["config_overrides"]:
        try:  # what TOML cannot hold (null, objects) is refused here, not when the file is written
            render_toml(_merge({}, spec["config_overrides"]))
        except (TypeError, ValueError) as exc:
            raise SpecError(label, "config_overrides", "cannot be written as TOML: %s" % exc)
    return spec


# knarr.toml keys whose values are secrets (cockpit.auth_token, ...): never shown in diffs or results.
SECRET_KEY_RE = re.compile(r"(token|secret|password|passphrase)", re.I)


def secret_values(tree):
    """The values of secret-looking keys anywhere in a nested mapping (e.g. config_overrides)."""
    found = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(value, (dict, list)):
                found |= secret_values(value)
            elif SECRET_KEY_RE.search(str(key)) and isinstance(value, str) and value:
                found.add(value)
    elif isinstance(tree, list):
        for value in tree:
            found |= secret_values(value)
    return found


def redact_toml(text):
    """knarr.toml text with the values of secret-looking keys replaced, for diffs."""
    return re.sub(r'(?m)^(\s*"?[A-Za-z0-9_.-]*(?:token|secret|password|passphrase)[A-Za-z0-9_.-]*"?\s*=\s*).*$',
                  r'\1"********"', text, flags=re.I)


def _merge(base, override):
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# Where a real knarr node would otherwise reach out on its own: the Solana RPC of its wallet balance loop
# (``[token] rpc_url``, empty = a public default).  Pointed at the discard port on loopback, it fails at once.
NO_RPC_URL = "http://127.0.0.1:9"


def build_config(spec, ip):
    """knarr.toml as data for a normalised spec and its allocated address.

    Written for knarr v0.57 (``cli/config_schema.py``, ``cli/main.py``, ``dht/node.py``): the node port
    speaks TLS with a certificate made from the node's seed (``[node] tls``, and ``tls_required`` so a node
    without one refuses to start rather than fall back to plain TCP); ``advertise_host`` is always the
    node's address (without it a node bound to 0.0.0.0 asks public services for its IP); the bootstrap list
    is always written (empty unless the fleet names its own peers); auto-upgrade, UPnP and the wallet's RPC
    are off, so nothing makes a node dial the internet.
    """
    label = spec["label"]
    config = {
        "node": {
            "host": "0.0.0.0",
            "port": spec["node_port"],
            "advertise_host": ip,
            "sidecar_port": spec["sidecar_port"],
            "storage": "node.db",
            "jurisdiction": spec["jurisdiction"],
            "tls": True,
            "tls_required": True,
            "auto_upgrade": False,
        },
        "cockpit": {"port": spec["cockpit_port"], "bind": spec["cockpit_bind"]},
        "network": {"bootstrap": list(spec["bootstrap"]), "upnp": bool(spec["upnp"])},
        "token": {"rpc_url": NO_RPC_URL},
        "policy": {"initial_credit": spec["initial_credit"], "min_balance": spec["min_balance"]},
        "skills": {
            "echo": {
                "description": "Echo skill \u2014 proof of life for %s" % label,
                "handler": "skills/echo.py:handle",
                "price": spec["echo_price"],
                "tags": list(spec["echo_tags"]),
                "input_schema": {"text": "string"},
                "output_schema": {"text": "string"},
            },
        },
        "fenrir": {"label": label, "server_id": spec["server_id"]},
    }
    if spec.get("location") is not None:
        config["fenrir"]["location"] = spec["location"]
    if spec.get("provisioner_node_id"):
        config["peer_overrides"] = {spec["provisioner_node_id"][:16]: spec["provisioner_endpoint"]}
    return _merge(config, spec.get("config_overrides") or {})


def render_toml(config):
    import tomli_w
    return tomli_w.dumps(config)


def node_files(spec, ip):
    """The three files a node needs besides its identity: path -> (bytes, mode)."""
    return {
        CONFIG_DIR + "/knarr.toml": (render_toml(build_config(spec, ip)).encode("utf-8"), 0o644),
        CONFIG_DIR + "/skills/echo.py": ((spec.get("echo_source") or ECHO_SOURCE).encode("utf-8"), 0o644),
    }


def spec_digest(spec):
    """A stable digest of the container-level settings (what a change of forces a new container)."""
    keys = ("image", "network", "memory_bytes", "pids_limit", "restart_policy")
    return hashlib.sha256(json.dumps({k: spec[k] for k in keys}, sort_keys=True).encode()).hexdigest()[:16]


def parse_payload(payload_json, dry_run=None):
    """The seed's setup-docker input: payload_json (from prepare-payload) and dry_run (a boolean).

    Returns a raw node spec (validated later by normalize_spec) -- raises SpecError naming the field.
    """
    if dry_run is not None and not isinstance(dry_run, bool):
        raise SpecError(None, "dry_run", "must be a boolean (true or false), got %r" % (dry_run,))
    if isinstance(payload_json, dict):
        payload = payload_json
    else:
        try:
            payload = json.loads(payload_json)
        except (TypeError, ValueError) as exc:
            raise SpecError(None, "payload_json", "is not valid JSON: %s" % exc)
    if not isinstance(payload, dict):
        raise SpecError(None, "payload_json", "must be a JSON object")
    label = payload.get("label")
    if label is None:
        raise SpecError(None, "payload_json.label", "is required")
    validate_label(label)
    for key in ("location", "node_db_b64"):
        if key not in payload or payload[key] in (None, ""):
            raise SpecError(label, "payload_json.%s" % key, "is required")
    from ansible_collections.fenrir.fleet.plugins.module_utils.identity import IdentityError, seed_from_b64
    try:
        seed_from_b64(payload["node_db_b64"], label, "payload_json.node_db_b64")
    except IdentityError as exc:
        raise SpecError(label, "payload_json.node_db_b64", str(exc).split(": ", 1)[-1])
    raw = dict(label=label, location=payload["location"], node_db_b64=payload["node_db_b64"])
    for key in ("provisioner_node_id", "echo_source", "nonce", "ip"):
        if payload.get(key) not in (None, ""):
            raw[key] = payload[key]
    return raw
