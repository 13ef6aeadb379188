# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a knarr node's files are made of: its knarr.toml (as data, then TOML) and its echo skill.

``knarr.toml`` is built as a dict and serialised by a real TOML writer (tomli_w), so no value -- a
quote, a newline, a bracket -- can change the file's structure.
"""

from __future__ import annotations

import copy
import json
import re

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import validate_label

CONFIG_DIR = "/opt/knarr"

ECHO_SOURCE = '''\
"""Echo skill: proof of life for a fenrir.fleet knarr node."""


async def handle(input_data: dict) -> dict:
    return {"text": input_data["text"]}
'''

NODE_ID_RE = re.compile(r"^[0-9a-f]{64}$")
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
    """knarr.toml as data for a normalised node (node_spec.normalize_node) and its allocated address.

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
            "port": spec["port"],
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


def node_files(node, ip):
    """The files a node needs besides its identity: path -> (bytes, mode)."""
    return {
        CONFIG_DIR + "/knarr.toml": (render_toml(build_config(node, ip)).encode("utf-8"), 0o644),
        CONFIG_DIR + "/skills/echo.py": ((node.get("echo_source") or ECHO_SOURCE).encode("utf-8"), 0o644),
    }


def check_overrides(label, overrides):
    """Refuse config_overrides that TOML cannot hold (null, objects), naming the node, before anything is written."""
    try:
        render_toml(_merge({}, overrides))
    except (TypeError, ValueError) as exc:
        raise SpecError(label, "config_overrides", "cannot be written as TOML: %s" % exc)


def parse_payload(payload_json, dry_run=None):
    """The seed's setup-docker input: payload_json (from prepare-payload) and dry_run (a boolean).

    A payload names its node and the identity prepare-payload reserved for it in the registry: ``label``,
    ``location``, ``node_id`` (public) and ``nonce``; the seed itself stays in the registry, encrypted. A payload
    carrying the identity itself (``node_db_b64``, the original skill's form) is still accepted; when it also
    names a ``node_id``, the two must agree.

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
    if payload.get("location") in (None, ""):
        raise SpecError(label, "payload_json.location", "is required")
    node_id = payload.get("node_id")
    if node_id not in (None, "") and not (isinstance(node_id, str) and NODE_ID_RE.match(node_id)):
        raise SpecError(label, "payload_json.node_id", "must be a node id (64 lowercase hex characters)")
    seed_b64 = payload.get("node_db_b64")
    if seed_b64 in (None, "") and node_id in (None, ""):
        raise SpecError(label, "payload_json.node_id", "is required (the identity prepare-payload reserved in the "
                                                       "registry; or node_db_b64, the identity itself)")
    raw = dict(label=label, location=payload["location"])
    if seed_b64 not in (None, ""):
        from ansible_collections.fenrir.fleet.plugins.module_utils.identity import (
            IdentityError, node_id_from_seed, seed_from_b64)
        try:
            seed = seed_from_b64(seed_b64, label, "payload_json.node_db_b64")
        except IdentityError as exc:
            raise SpecError(label, "payload_json.node_db_b64", str(exc).split(": ", 1)[-1])
        if node_id not in (None, "") and node_id_from_seed(seed) != node_id:
            raise SpecError(label, "payload_json.node_id", "is not the node id of payload_json.node_db_b64")
        raw["node_db_b64"] = seed_b64
    for key in ("node_id", "provisioner_node_id", "echo_source", "nonce", "ip"):
        if payload.get(key) not in (None, ""):
            raw[key] = payload[key]
    return raw
