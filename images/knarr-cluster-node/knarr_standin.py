#!/usr/bin/env python3
"""Stand-in for ``knarr serve`` (knarr v0.57), the peer in fenrir.fleet's reference node image.

Installed in the knarr-cluster-node image as /usr/local/bin/knarr.

    knarr serve  --config /opt/knarr/knarr.toml
    knarr health --config /opt/knarr/knarr.toml
    knarr echo   --host HOST --port PORT [--node-id ID] [--text TEXT]   (a client: call a node's echo skill)
    knarr --version

Why a stand-in: the collection's tests need a node that boots in a fraction of a second, runs in a tiny
image without pip packages, and never dials out -- yet speaks knarr's own node protocol so faithfully that
the collection's probe cannot tell it from a node built from knarr's modules.  It was written from a
reading of knarr's sources (knarrnet/knarr); none of them is copied or imported.

What it serves, as knarr v0.57 does
-----------------------------------
* **Files.**  ``knarr.toml`` (invalid TOML: exit 2); ``[node] storage`` (``node.db``, relative to the
  config directory) holding the identity, a 32-byte Ed25519 seed in ``node_identity(key_bytes)``.  The node
  id is the hex SHA-256 of the verify key.  A missing database, table or row: a new identity is generated
  and stored ("Generated new persistent node identity"), as knarr does.  A seed of the wrong length or type,
  an unreadable database or (stricter than knarr) more than one row: exit 3, naming the problem, never
  the seed.
* **Transport.**  The node port (``[node] host``/``port``) speaks TLS unless ``[node] tls = false``.  The
  certificate is ``cert.pem``/``key.pem`` in the data directory (``[network] tls_cert``/``tls_key``
  override), generated when missing: self-signed, Ed25519, keyed by the node's seed, CN = first 16 hex of
  the node id.  With ``tls_required`` (default true) a node without a usable certificate refuses to start
  (exit 6); with ``tls_required = false`` it falls back to plain TCP with a warning.
* **Framing.**  4-byte big-endian length + UTF-8 JSON, at most 1 MiB; the first 4 bytes must come within
  2 s; an HTTP verb closes the connection; many request/answer pairs per connection, 120 s idle.
* **Messages.**  Rebuilt from v0.57's field lists (unknown fields dropped, missing ones defaulted), then
  the Ed25519 signature over the canonical form must verify and a non-empty ``node_id`` must equal
  sha256(public_key); otherwise -- and for an unknown ``type`` -- the connection is closed without a reply.
  HEARTBEAT is answered with a signed HEARTBEAT; TASK_REQUEST runs knarr's checks in knarr's order:
  replayed msg_id (DUPLICATE_REQUEST), ``uri`` (URI_MISMATCH), unknown skill (UNKNOWN_SKILL), input size
  and ``input_schema`` keys (INPUT_TOO_LARGE, INVALID_INPUT), requester address (INVALID_REQUEST),
  visibility private/whitelist (ACCESS_DENIED), credit (ADMISSION_BLOCKED: the caller's balance starts at
  ``[economy] default_soft_limit`` else ``[policy] initial_credit`` (3.0), a call is refused when balance -
  price < ``[economy] default_hard_limit`` else ``[policy] min_balance`` (-10.0); price 0 always passes),
  busy slots (RETRY_AFTER); then the handler (TIMEOUT, HANDLER_ERROR) and a signed TASK_RESULT.
* **Skills.**  ``[skills.<name>] handler = "file.py:function"`` relative to the config directory; async or
  plain functions, with an optional second ``ctx`` argument; run in worker threads like knarr's.
* **Cockpit.**  When ``[cockpit] port > 0``: on ``[cockpit] bind`` (127.0.0.1), HTTPS with a self-signed
  ECDSA certificate unless ``[cockpit] tls = "off"`` (plain HTTP).  ``GET /health`` needs no token;
  ``GET /api/status`` and ``/api/skills`` need ``Authorization: Bearer <token>`` (401 otherwise): the token
  is ``[cockpit] auth_token``, else one generated into ``.cockpit_token`` (0600, never printed).

What it leaves out: the DHT (it never joins, announces or dials anyone -- bootstrap peers, UPnP, wallets,
upgrades are read and ignored), mail, the sidecar, plugins, persistence of the ledger (credit is kept in
memory).  Skills that fail to load, or have an invalid visibility, stop start-up (exit 4) where knarr would
skip them: a node image that silently lacks its echo skill helps nobody.

Exit status: 0 clean stop (SIGTERM/SIGINT), 1 health check failed, 2 usage or config error, 3 identity
problem, 4 skill failed to load, 5 cannot listen / runtime dependency missing, 6 TLS required but unavailable.

Only the standard library and ``cryptography`` (Debian bookworm's 38.x suffices) are used.
"""

import json
import os
import sys

VERSION = "0.57.0"
MAX_MESSAGE_SIZE = 1048576
FIRST_BYTES_TIMEOUT = 2.0
IDLE_TIMEOUT = 120.0
MAX_CONNECTIONS = 256
MAX_TASK_DEDUP = 5000
MAX_HTTP_HEADER = 64 * 1024
MAX_HTTP_BODY = 1024 * 1024
HTTP_VERBS = (b"GET ", b"POST", b"PUT ", b"DELE", b"HEAD", b"OPTI", b"PATC")

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_CONFIG = 2
EXIT_IDENTITY = 3
EXIT_SKILL = 4
EXIT_RUNTIME = 5
EXIT_TLS = 6

# Sections and keys knarr v0.57 knows (cli/config_schema.py NODE_CONFIG_SCHEMA): others get a warning.
KNOWN_SECTIONS = {
    "node": {"port", "host", "storage", "advertise_host", "sidecar_port", "max_asset_size", "max_task_timeout",
             "task_slots", "min_protocol_version", "auto_upgrade", "backup_retention_days", "wallet",
             "jurisdiction", "event_bus_size", "event_bus_debug", "max_queue_depth", "log_retention",
             "log_retention_hours", "housekeeping_retention_days", "startup_jitter", "sweep_interval",
             "implicit_hb_types", "pools", "tls", "tls_required", "tls_pin_certs", "identity_bus_size"},
    "network": {"bootstrap", "upnp", "tls_cert", "tls_key", "max_connections", "connection_idle_timeout",
                "gossip_fanout", "heartbeat_silence_threshold", "peer_dead_timeout", "min_peers"},
    "skills": None, "bridges": None,
    "policy": {"initial_credit", "min_balance", "tit_for_tat", "group", "skill"},
    "mail": None,
    "cockpit": {"port", "bind", "auth_token", "tls", "tls_cert", "tls_key", "allowed_ips"},
    "economy": {"default_soft_limit", "default_hard_limit", "settlement_min_interval_seconds"},
    "settlement": None, "pricing": None, "netting": None, "prepaid": None, "sidecar": None,
    "warehouse_manager": None, "token": {"mint", "rpc_url"}, "static": None, "peer_overrides": None,
    "identities": None, "tor": None,
}

# The message types knarr v0.57 deserialises (core/messages.py type_map); any other type closes.
KNARR_TYPES = {
    "JOIN_REQUEST", "JOIN_RESPONSE", "ANNOUNCE", "QUERY", "QUERY_RESPONSE", "DEREGISTER", "HEARTBEAT", "ACK",
    "TASK_REQUEST", "TASK_STATUS", "TASK_RESULT", "SYNC_REQUEST", "SYNC_RESPONSE", "WARN", "BLOCKED",
    "MAIL_SYNC", "MAIL_ACK", "PLUGIN_MESSAGE", "MAIL_PULL_REQ", "MAIL_PULL_RESP", "MAIL_PULL_ACK",
}
# v0.57's field lists (defaults) of the types this stand-in serves or answers with.
SCHEMAS = {
    "HEARTBEAT": (("node_id", ""), ("timestamp", 0.0), ("version", ""), ("min_protocol_version", ""),
                  ("punchhole_epoch", 0)),
    "TASK_REQUEST": (("task_id", ""), ("requester_node_id", ""), ("requester_host", ""), ("requester_port", 0),
                     ("skill_name", ""), ("input_data", {}), ("timeout_ms", 30000), ("mode", "sync"),
                     ("target_identity", ""), ("uri", "")),
    "TASK_RESULT": (("task_id", ""), ("status", ""), ("output_data", {}), ("error", {}), ("receipt", "")),
    "TASK_STATUS": (("task_id", ""), ("status", ""), ("reason", ""), ("position", 0)),
    "ACK": (("status", ""), ("error_detail", None)),
}
EXCLUDED_FROM_SIGNATURE = {
    "hops", "ephemeral", "load", "sidecar_port", "version", "min_protocol_version", "mode", "peer_count",
    "batch_seq", "encryption_key", "receipt", "provider_host", "provider_port", "wallet", "has_wallet",
    "jurisdiction",
}

# Skill handlers live in the config directory; don't litter it with __pycache__.
sys.dont_write_bytecode = True


class Refuse(Exception):
    """Start-up must stop: message for stderr, and an exit status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def out(msg):
    print(msg, flush=True)


def log(msg):
    print("knarr: %s" % msg, file=sys.stderr, flush=True)


def warn(msg):
    log("warning: %s" % msg)


# ------------------------------------------------------------------------------------------- config

def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_config(path, warnings=True):
    import tomllib

    path = os.path.abspath(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise Refuse(EXIT_CONFIG, "config file %s does not exist" % path)
    except tomllib.TOMLDecodeError as e:
        raise Refuse(EXIT_CONFIG, "config file %s is not valid TOML: %s" % (path, e))
    except OSError as e:
        raise Refuse(EXIT_CONFIG, "cannot read config file %s: %s" % (path, e.strerror or e))

    def section(name):
        v = raw.get(name, {})
        if not isinstance(v, dict):
            raise Refuse(EXIT_CONFIG, "config: [%s] must be a table" % name)
        return v

    if warnings:
        for name, value in raw.items():
            if name not in KNOWN_SECTIONS:
                warn("config: unknown section [%s] (knarr ignores it)" % name)
            elif KNOWN_SECTIONS[name] is not None and isinstance(value, dict):
                for key, v in value.items():
                    if key not in KNOWN_SECTIONS[name] and not isinstance(v, dict):
                        warn("config: unknown key '%s' in [%s]" % (key, name))

    node, network, cockpit = section("node"), section("network"), section("cockpit")
    policy, economy, fenrir, skills_raw = section("policy"), section("economy"), section("fenrir"), section("skills")

    def get(table, tname, key, default, check, what):
        value = table.get(key, default)
        if value is not None and not check(value):
            raise Refuse(EXIT_CONFIG, "config: %s.%s must be %s, got %r" % (tname, key, what, value))
        return value

    cfg = {"path": path, "dir": os.path.dirname(path)}
    cfg["data_dir"] = os.path.abspath(os.environ.get("KNARR_DATA_DIR") or cfg["dir"])
    cfg["host"] = get(node, "node", "host", "0.0.0.0", lambda v: isinstance(v, str) and v, "a non-empty string")
    cfg["port"] = get(node, "node", "port", 9000, lambda v: _is_int(v) and 1 <= v <= 65535, "an integer 1..65535")
    cfg["advertise_host"] = get(node, "node", "advertise_host", None, lambda v: isinstance(v, str), "a string")
    storage = get(node, "node", "storage", "node.db", lambda v: isinstance(v, str) and v, "a non-empty string")
    cfg["storage"] = storage if os.path.isabs(storage) else os.path.join(cfg["data_dir"], storage)
    cfg["tls"] = get(node, "node", "tls", True, lambda v: isinstance(v, bool), "true or false")
    cfg["tls_required"] = get(node, "node", "tls_required", True, lambda v: isinstance(v, bool), "true or false")
    cfg["min_protocol_version"] = get(node, "node", "min_protocol_version", "", lambda v: isinstance(v, str),
                                      "a string")
    cfg["task_slots"] = max(1, min(64, get(node, "node", "task_slots", 4, _is_int, "an integer")))
    cfg["max_task_timeout"] = get(node, "node", "max_task_timeout", 3600, _is_number, "a number")
    for key in ("tls_cert", "tls_key"):
        cfg[key] = get(network, "network", key, None, lambda v: isinstance(v, str) and v, "a non-empty string")
    cfg["custom_tls"] = cfg["tls_cert"] is not None or cfg["tls_key"] is not None
    cfg["bootstrap"] = get(network, "network", "bootstrap", [], lambda v: isinstance(v, list), "a list")
    cfg["cockpit_port"] = get(cockpit, "cockpit", "port", 0, lambda v: _is_int(v) and 0 <= v <= 65535,
                              "an integer 0..65535")
    cfg["cockpit_bind"] = get(cockpit, "cockpit", "bind", "127.0.0.1", lambda v: isinstance(v, str) and v,
                              "a non-empty string")
    cfg["auth_token"] = get(cockpit, "cockpit", "auth_token", "", lambda v: isinstance(v, str), "a string")
    cfg["cockpit_tls"] = cockpit.get("tls", "auto")
    if cfg["cockpit_tls"] is False:  # knarr compares with "off"; a boolean false would mean HTTPS there
        warn('config: cockpit.tls = false is not "off": the cockpit serves HTTPS, as knarr would')
    for key in ("tls_cert", "tls_key"):
        cfg["cockpit_" + key] = get(cockpit, "cockpit", key, None, lambda v: isinstance(v, str) and v,
                                    "a non-empty string")
    initial = get(policy, "policy", "initial_credit", 3.0, _is_number, "a number")
    minimum = get(policy, "policy", "min_balance", -10.0, _is_number, "a number")
    cfg["initial_credit"] = float(get(economy, "economy", "default_soft_limit", initial, _is_number, "a number"))
    cfg["hard_limit"] = float(get(economy, "economy", "default_hard_limit", minimum, _is_number, "a number"))
    cfg["tit_for_tat"] = bool(get(policy, "policy", "tit_for_tat", False, lambda v: isinstance(v, bool),
                                  "true or false"))
    cfg["default_timeout"] = float(get(skills_raw, "skills", "default_timeout", 30, _is_number, "a number"))
    cfg["minimum_price"] = float(get(skills_raw, "skills", "minimum_price", 0.0, _is_number, "a number"))
    for key in ("label", "location"):
        cfg[key] = get(fenrir, "fenrir", key, None, lambda v: isinstance(v, str), "a string")

    skills = {}
    for name, spec in skills_raw.items():
        if not isinstance(spec, dict):
            continue  # skills.default_timeout, skills.minimum_price
        where = "skill '%s'" % name
        handler = spec.get("handler")
        if not handler:
            warn("%s has no handler: skipped (as knarr does)" % where)
            continue
        if not isinstance(handler, str):
            raise Refuse(EXIT_SKILL, "%s: handler must be \"relative/path.py:function\", got %r" % (where, handler))
        visibility = spec.get("visibility", "public")
        allowed = spec.get("allowed_nodes", [])
        if visibility not in ("public", "private", "whitelist"):
            raise Refuse(EXIT_SKILL, "%s: visibility %r is not public, private or whitelist" % (where, visibility))
        if not isinstance(allowed, list) or not all(isinstance(n, str) for n in allowed):
            raise Refuse(EXIT_SKILL, "%s: allowed_nodes must be a list of node ids" % where)
        if visibility == "whitelist" and not allowed:
            raise Refuse(EXIT_SKILL, "%s: visibility 'whitelist' needs allowed_nodes" % where)
        schema = spec.get("input_schema", {})
        if not isinstance(schema, dict):
            raise Refuse(EXIT_SKILL, "%s: input_schema must be a table of field = type name" % where)
        price = spec.get("price", 1.0)
        if not _is_number(price):
            raise Refuse(EXIT_SKILL, "%s: price must be a number, got %r" % (where, price))
        max_input = spec.get("max_input_size", 65536)
        if not _is_int(max_input) or not 0 < max_input <= 10485760:
            raise Refuse(EXIT_SKILL, "%s: max_input_size must be an integer 1..10485760" % where)
        tags = spec.get("tags") or ["custom"]
        skills[name.lower()] = {
            "name": name.lower(), "handler": handler, "description": spec.get("description", ""),
            "tags": [tags] if isinstance(tags, str) else list(tags), "input_schema": schema,
            "output_schema": spec.get("output_schema", {}), "price": float(price), "visibility": visibility,
            "allowed_nodes": list(allowed), "max_input_size": max_input, "version": spec.get("version", "1.0.0"),
        }
    cfg["skills"] = skills
    return cfg


# ----------------------------------------------------------------------------------------- identity

def load_identity(db_path, create=True):
    """(seed, generated) from ``node_identity``; generates and stores one where knarr would."""
    import sqlite3
    import urllib.parse

    if os.path.lexists(db_path) and not os.path.isfile(db_path):
        raise Refuse(EXIT_IDENTITY, "identity database %s is not a regular file" % db_path)

    def read(params):
        uri = "file:" + urllib.parse.quote(db_path) + "?" + params
        conn = sqlite3.connect(uri, uri=True)
        try:
            return conn.execute("SELECT key_bytes FROM node_identity LIMIT 2").fetchall()
        finally:
            conn.close()

    rows = []
    if os.path.exists(db_path):
        try:
            try:
                rows = read("mode=ro")
            except sqlite3.OperationalError as e:
                # A WAL-mode database in a read-only directory/mount cannot get its -shm file;
                # read the main file as immutable instead.
                if "unable to open" not in str(e) and "readonly" not in str(e):
                    raise
                rows = read("mode=ro&immutable=1")
        except sqlite3.DatabaseError as e:
            if "no such table" not in str(e):
                msg = "it is not an SQLite database" if "not a database" in str(e) else str(e)
                raise Refuse(EXIT_IDENTITY, "cannot read identity from %s: %s" % (db_path, msg))
            rows = []
    if len(rows) > 1:
        raise Refuse(EXIT_IDENTITY, "identity database %s: node_identity has more than one row" % db_path)
    if rows:
        seed = rows[0][0]
        if not isinstance(seed, bytes):
            raise Refuse(EXIT_IDENTITY, "identity database %s: key_bytes is %s, not a 32-byte blob"
                         % (db_path, type(seed).__name__))
        if len(seed) != 32:
            raise Refuse(EXIT_IDENTITY, "identity database %s: key_bytes is %d bytes, expected 32"
                         % (db_path, len(seed)))
        return seed, False
    if not create:
        raise Refuse(EXIT_IDENTITY, "identity database %s holds no identity" % db_path)
    seed = os.urandom(32)
    try:
        conn = sqlite3.connect(db_path)
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS node_identity (key_bytes BLOB)")
            conn.execute("INSERT INTO node_identity (key_bytes) VALUES (?)", (seed,))
            conn.commit()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise Refuse(EXIT_IDENTITY, "cannot store a new identity in %s: %s" % (db_path, e))
    return seed, True


# --------------------------------------------------------------------------------------------- wire

class Keys(object):
    """The node's Ed25519 key pair (the seed itself is not kept)."""

    def __init__(self, seed):
        import hashlib

        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_hex = self.public.hex()
        self.node_id = hashlib.sha256(self.public).hexdigest()


def canonical(message):
    data = dict(message)
    data["signature"] = ""
    for name in EXCLUDED_FROM_SIGNATURE:
        data.pop(name, None)
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def rebuild(raw):
    """The message the way knarr's receiver sees it: its type's fields only, defaults for missing ones."""
    msg = {"type": raw["type"], "msg_id": raw.get("msg_id", ""), "public_key": raw.get("public_key", ""),
           "signature": raw.get("signature", "")}
    for name, default in SCHEMAS[raw["type"]]:
        msg[name] = raw[name] if name in raw else (json.loads(json.dumps(default))
                                                   if isinstance(default, dict) else default)
    return msg


def verify(msg):
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    pk, sig = msg.get("public_key"), msg.get("signature")
    if not isinstance(pk, str) or not isinstance(sig, str) or not pk or not sig:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(pk)).verify(bytes.fromhex(sig), canonical(msg))
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def sign(keys, msg_type, **fields):
    import uuid

    msg = {"type": msg_type, "msg_id": str(uuid.uuid4()), "public_key": keys.public_hex, "signature": ""}
    for name, default in SCHEMAS[msg_type]:
        msg[name] = fields.get(name, default)
    msg["signature"] = keys.private.sign(canonical(msg)).hex()
    return msg


def frame(msg):
    import struct

    body = json.dumps(msg).encode("utf-8")
    if len(body) > MAX_MESSAGE_SIZE:
        raise ValueError("message of %d bytes exceeds 1 MiB" % len(body))
    return struct.pack(">I", len(body)) + body


def node_id_of(public_key_hex):
    import hashlib

    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()


def parse_knarr_uri(uri):
    """(authority, selector, resource) of knarr://<authority>/<selector>/<resource>, or None."""
    import re

    m = re.match(r"^knarr://([^/]*)/([a-z])/(.*)$", uri) if isinstance(uri, str) else None
    if not m or m.group(2) not in "spcmkgo":
        return None
    authority, resource = m.group(1), m.group(3)
    if authority and not re.match(r"^[a-f0-9]{1,64}$", authority):
        return None
    if ".." in resource or len(resource) > 1024:
        return None
    return authority, m.group(2), resource


# ---------------------------------------------------------------------------------------------- TLS

def _write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def generate_node_cert(seed, node_id, cert_path, key_path, days=365):
    """knarr's protocol certificate: self-signed, Ed25519 keyed by the node's seed, CN = node_id[:16]."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    key = Ed25519PrivateKey.from_private_bytes(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id[:16])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(int.from_bytes(bytes.fromhex(node_id)[:16], "big") or 1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=days))
            .sign(key, algorithm=None))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))


def generate_cockpit_cert(node_id, cert_path, key_path, days=365):
    """knarr's cockpit certificate: ECDSA P-256 (browser-compatible), SAN localhost and 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id[:16])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))


def _resolve(cfg, value, default):
    value = value or default
    return value if os.path.isabs(value) else os.path.join(cfg["data_dir"], value)


def node_tls_context(cfg, seed, node_id):
    """The node port's server context, or None for plain TCP (refuses start-up per tls_required)."""
    import ssl

    if not cfg["tls"]:
        return None
    cert, key = _resolve(cfg, cfg["tls_cert"], "cert.pem"), _resolve(cfg, cfg["tls_key"], "key.pem")
    problem = None
    if not cfg["custom_tls"] and not (os.path.exists(cert) and os.path.exists(key)):
        try:
            generate_node_cert(seed, node_id, cert, key)
            log("Generated TLS certificate (valid 365 days)")
        except OSError as e:
            problem = "cannot write %s: %s" % (cert, e.strerror or e)
    if problem is None:
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(cert, key)
            return ctx
        except (OSError, ssl.SSLError) as e:
            problem = "cannot load %s / %s: %s" % (cert, key, getattr(e, "strerror", None) or e)
    if cfg["tls_required"]:
        raise Refuse(EXIT_TLS, "TLS is required ([node] tls_required) but unavailable: %s" % problem)
    warn("TLS unavailable (%s): serving plain TCP because [node] tls_required = false" % problem)
    return None


def cockpit_tls_context(cfg, node_id):
    import ssl

    if cfg["cockpit_tls"] == "off":
        return None
    cert = _resolve(cfg, cfg["cockpit_tls_cert"], "cockpit-cert.pem")
    key = _resolve(cfg, cfg["cockpit_tls_key"], "cockpit-key.pem")
    if cfg["cockpit_tls_cert"] is None and cfg["cockpit_tls_key"] is None and not (
            os.path.exists(cert) and os.path.exists(key)):
        try:
            generate_cockpit_cert(node_id, cert, key)
        except OSError as e:
            raise Refuse(EXIT_TLS, "cannot write the cockpit certificate %s: %s" % (cert, e.strerror or e))
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        return ctx
    except (OSError, ssl.SSLError) as e:
        raise Refuse(EXIT_TLS, "cannot load the cockpit certificate %s: %s" % (cert, e))


def cockpit_token(cfg):
    """[cockpit] auth_token, else the one kept in .cockpit_token (generated once, like knarr's)."""
    import secrets

    if cfg["auth_token"]:
        return cfg["auth_token"]
    path = os.path.join(cfg["data_dir"], ".cockpit_token")
    try:
        with open(path) as f:
            token = f.read().strip()
        if token:
            return token
    except OSError:
        pass
    token = "knarr-%s" % secrets.token_hex(6)
    try:
        _write_private(path, token.encode())
    except OSError as e:
        warn("could not save the cockpit token to %s: %s" % (path, e.strerror or e))
    return token


# ------------------------------------------------------------------------------------------- skills

def load_skills(cfg, node_id):
    import importlib.util
    import inspect

    loaded = {}
    config_dir = os.path.abspath(cfg["dir"])
    for name in sorted(cfg["skills"]):
        spec = cfg["skills"][name]
        rel, dummy, func_name = spec["handler"].rpartition(":")
        if not rel:
            rel, func_name = spec["handler"], "handle"
        path = os.path.abspath(os.path.join(config_dir, rel))
        where = "skill '%s' (handler %r)" % (name, spec["handler"])
        if not path.startswith(config_dir + os.sep):
            raise Refuse(EXIT_SKILL, "%s: handler path escapes the config directory %s" % (where, config_dir))
        if not os.path.isfile(path):
            raise Refuse(EXIT_SKILL, "%s: file %s does not exist" % (where, path))
        try:
            mod_name = "knarr_skill_" + "".join(c if c.isalnum() else "_" for c in name)
            mspec = importlib.util.spec_from_file_location(mod_name, path)
            if mspec is None or mspec.loader is None:
                raise ImportError("cannot import %s" % path)
            module = importlib.util.module_from_spec(mspec)
            sys.modules[mod_name] = module
            mspec.loader.exec_module(module)
        except (Exception, SystemExit) as e:
            raise Refuse(EXIT_SKILL, "%s failed to load: %s: %s" % (where, type(e).__name__, e))
        func = getattr(module, func_name or "handle", None)
        if func is None or not callable(func):
            raise Refuse(EXIT_SKILL, "%s: %s has no callable '%s'" % (where, path, func_name))
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):
            params = []
        if not params:
            raise Refuse(EXIT_SKILL, "%s: handler must accept (input_data[, ctx])" % where)
        loaded[name] = dict(spec, func=func, is_async=inspect.iscoroutinefunction(func),
                            wants_ctx=len(params) >= 2)
        log("skill %s loaded from %s:%s" % (name, path, func_name))
    return loaded


# --------------------------------------------------------------------------------------------- node

class Node(object):
    def __init__(self, cfg, keys, skills):
        import collections
        import concurrent.futures
        import time

        self.cfg, self.keys, self.skills = cfg, keys, skills
        self.node_id = keys.node_id
        self.conn_tasks = set()
        self.active_connections = 0
        self.seen_requests = collections.OrderedDict()
        self.ledger = {}  # caller public key -> balance
        self.busy = 0
        self.started = time.monotonic()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(8, cfg["task_slots"] * 2),
                                                          thread_name_prefix="skill")

    def _track(self):
        import asyncio

        task = asyncio.current_task()
        self.conn_tasks.add(task)
        task.add_done_callback(self.conn_tasks.discard)

    # -- node port --------------------------------------------------------------------------------

    async def handle_node(self, reader, writer):
        import asyncio

        self._track()
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        if self.active_connections >= MAX_CONNECTIONS:
            writer.close()
            return
        self.active_connections += 1
        try:
            try:
                pending = await asyncio.wait_for(reader.read(4), FIRST_BYTES_TIMEOUT)
            except asyncio.TimeoutError:
                return
            if not pending:
                return
            if pending[:4].upper() in HTTP_VERBS:
                warn("HTTP_REJECTED: peer_ip=%s attempted HTTP to the protocol port" % peer)
                return
            while True:
                try:
                    raw = await asyncio.wait_for(self._read_frame(reader, pending), IDLE_TIMEOUT)
                except asyncio.TimeoutError:
                    return
                pending = b""
                if raw is None:
                    return
                msg = self._accept(raw, peer)
                if msg is None:
                    return
                reply = await self.process(msg)
                if reply is not None:
                    writer.write(frame(reply))
                    await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception as e:  # knarr: any error handling a connection closes it
            log("error handling connection from %s: %s: %s" % (peer, type(e).__name__, e))
        finally:
            self.active_connections -= 1
            try:
                writer.close()
            except Exception:
                pass

    async def _read_frame(self, reader, pending):
        import asyncio
        import struct

        try:
            header = pending + await reader.readexactly(4 - len(pending)) if len(pending) < 4 else pending[:4]
        except asyncio.IncompleteReadError:
            return None
        (length,) = struct.unpack(">I", header)
        if length > MAX_MESSAGE_SIZE:
            warn("PROTOCOL_ERR: message too large: %d bytes (max %d)" % (length, MAX_MESSAGE_SIZE))
            return None
        try:
            body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return None
        try:
            raw = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            warn("PROTOCOL_ERR: a frame that is not UTF-8 JSON")
            return None
        return raw if isinstance(raw, dict) else None

    def _accept(self, raw, peer):
        """The verified message, or None (closing the connection) for what knarr drops."""
        mtype = raw.get("type")
        if mtype not in KNARR_TYPES:
            warn("dropping message of unknown type %r from %s" % (str(mtype)[:40], peer))
            return None
        if mtype not in SCHEMAS:
            warn("dropping %s from %s: not served by this stand-in" % (mtype, peer))
            return None
        msg = rebuild(raw)
        if not verify(msg):
            warn("Dropping message with invalid signature: type=%s from %s" % (mtype, peer))
            return None
        if msg.get("node_id") and msg["node_id"] != node_id_of(msg["public_key"]):
            warn("Dropping message with mismatched node_id: type=%s from %s" % (mtype, peer))
            return None
        return msg

    async def process(self, msg):
        import time

        mtype = msg["type"]
        if mtype == "HEARTBEAT":
            return sign(self.keys, "HEARTBEAT", node_id=self.node_id, timestamp=time.time(), version=VERSION,
                        min_protocol_version=self.cfg["min_protocol_version"], punchhole_epoch=0)
        if mtype == "TASK_REQUEST":
            return await self.task_request(msg)
        if mtype == "TASK_RESULT":
            return sign(self.keys, "ACK", status="error", error_detail="Task ID not found")
        return None

    def _failed(self, msg, code, message, **extra):
        error = {"code": code, "message": message}
        error.update(extra)
        return sign(self.keys, "TASK_RESULT", task_id=msg["task_id"], status="failed", error=error)

    def _uri_problem(self, msg, skill_name):
        uri = msg["uri"]
        if not uri:
            return None  # a pre-v0.56 client: routed by skill_name alone
        parsed = parse_knarr_uri(uri)
        if parsed is None:
            return "invalid_uri"
        authority, selector, resource = parsed
        if selector != "s":
            return "bad_selector"
        if resource.split("@", 1)[0].lower() != skill_name:
            return "skill_mismatch"
        target = msg["target_identity"]
        if target and target != self.node_id:
            return "authority_unknown_identity"
        if authority and authority != self.node_id:
            return "authority_mismatch"
        return None

    async def task_request(self, msg):
        import asyncio
        import time

        # Replay guard: a msg_id is good for one request.
        if msg["msg_id"] in self.seen_requests:
            return self._failed(msg, "DUPLICATE_REQUEST", "Request already processed")
        self.seen_requests[msg["msg_id"]] = True
        if len(self.seen_requests) > MAX_TASK_DEDUP:
            for dummy in range(MAX_TASK_DEDUP // 2):
                self.seen_requests.popitem(last=False)

        skill_name = str(msg["skill_name"]).lower()
        reason = self._uri_problem(msg, skill_name)
        if reason:
            return self._failed(msg, "URI_MISMATCH", "TaskRequest uri does not address this node's skill: %s" % reason)
        skill = self.skills.get(skill_name)
        if skill is None:
            return self._failed(msg, "UNKNOWN_SKILL", "No handler for skill '%s'" % skill_name)
        data = msg["input_data"]
        if not isinstance(data, dict):
            return self._failed(msg, "INVALID_INPUT", "input_data must be an object")
        if not data.get("_healthcheck"):
            if len(json.dumps(data).encode("utf-8")) > skill["max_input_size"]:
                return self._failed(msg, "INPUT_TOO_LARGE",
                                    "Input data exceeds maximum size of %d bytes" % skill["max_input_size"])
            required = skill["input_schema"].get("_required", list(skill["input_schema"]))
            missing = [k for k in required if k not in data]
            if missing:
                return self._failed(msg, "INVALID_INPUT", "Missing required fields: %s" % ", ".join(missing),
                                    detail={"missing_fields": missing})
        host, port, requester = msg["requester_host"], msg["requester_port"], msg["requester_node_id"] or "unknown"
        if (not isinstance(host, str) or not host or len(host) > 256 or not _is_int(port) or not 1 <= port <= 65535
                or not isinstance(requester, str) or len(requester) > 128):
            return self._failed(msg, "INVALID_REQUEST", "Invalid requester address fields")
        caller_key = msg["public_key"]
        caller = node_id_of(caller_key)
        self_call = caller_key == self.keys.public_hex
        if skill["visibility"] == "private" and not self_call:
            return self._failed(msg, "ACCESS_DENIED", "Skill '%s' is private" % skill_name)
        if skill["visibility"] == "whitelist" and not self_call and caller not in skill["allowed_nodes"]:
            return self._failed(msg, "ACCESS_DENIED", "Not authorized to execute skill '%s'. Your node_id: %s"
                                % (skill_name, caller))
        balance = self.ledger.setdefault(caller_key, self.cfg["initial_credit"])
        price = skill["price"]
        if price > 0:
            price = max(price, self.cfg["minimum_price"])
        if price > 0 and not self.cfg["tit_for_tat"] and balance - price < self.cfg["hard_limit"]:
            return self._failed(msg, "ADMISSION_BLOCKED", "Insufficient credit: balance %.2f - price %.2f = %.2f "
                                "< hard limit %.2f" % (balance, price, balance - price, self.cfg["hard_limit"]))
        if self.busy >= self.cfg["task_slots"]:
            return self._failed(msg, "RETRY_AFTER", "Provider busy, try again in 1 seconds", retry_after_seconds=1)

        limit = msg["timeout_ms"] / 1000.0 if _is_number(msg["timeout_ms"]) and msg["timeout_ms"] > 0 \
            else self.cfg["default_timeout"]
        if self.cfg["max_task_timeout"] > 0:
            limit = min(limit, self.cfg["max_task_timeout"])
        job_input = dict(data, _job_id=msg["task_id"], _caller_node_id=caller)
        ctx = {"skill": skill_name, "node_id": self.node_id, "task_id": msg["task_id"]}
        self.busy += 1
        start = time.monotonic()
        try:
            result = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                self.pool, _run_handler, skill, job_input, ctx), timeout=limit)
        except asyncio.TimeoutError:
            return self._failed(msg, "TIMEOUT", "Handler exceeded %ss timeout" % limit)
        except Exception as e:  # a handler must never take the node down
            log("Handler error for '%s': %s: %s" % (skill_name, type(e).__name__, e))
            return self._failed(msg, "HANDLER_ERROR", "Handler execution failed")
        finally:
            self.busy -= 1
        wall_ms = int((time.monotonic() - start) * 1000)
        if not isinstance(result, dict):
            return self._failed(msg, "HANDLER_ERROR", "Handler returned %s, expected an object"
                                % type(result).__name__)
        result = {k: v for k, v in result.items() if not callable(v)}
        try:
            output_json = json.dumps(result, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return self._failed(msg, "HANDLER_ERROR", "Handler returned an object that is not JSON")
        if result.get("_billable") is not False:
            self.ledger[caller_key] = balance - max(price, 0.0)
        receipt = self._receipt(msg, skill_name, caller, price, data, output_json, wall_ms)
        reply = sign(self.keys, "TASK_RESULT", task_id=msg["task_id"], status="completed", output_data=result,
                     receipt=receipt)
        if len(json.dumps(reply)) > MAX_MESSAGE_SIZE:
            return self._failed(msg, "HANDLER_ERROR", "Handler output exceeds the 1 MiB message limit")
        return reply

    def _receipt(self, msg, skill_name, caller, price, data, output_json, wall_ms):
        """An execution receipt like knarr's: signed JSON of the payload, base64 signature (not part of the
        message signature)."""
        import base64
        import hashlib
        import time

        payload = {
            "task_id": msg["task_id"], "skill_name": skill_name, "provider_node_id": self.node_id,
            "consumer_node_id": caller, "credits_charged": price,
            "input_hash": hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest(),
            "output_hash": hashlib.sha256(output_json.encode()).hexdigest(), "wall_ms": wall_ms,
            "price_breakdown": None, "timestamp": int(time.time()),
        }
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        signature = base64.b64encode(self.keys.private.sign(body)).decode()
        return json.dumps({"data": payload, "signature": signature}, sort_keys=True, separators=(",", ":"))

    # -- cockpit ----------------------------------------------------------------------------------

    def status(self):
        import time

        return {
            "node_id": self.node_id, "public_key": self.keys.public_hex, "version": VERSION,
            "uptime_seconds": int(time.monotonic() - self.started), "peer_count": 0,
            "skill_count": len(self.skills), "skills": sorted(self.skills), "port": self.cfg["port"],
            "advertise_host": self.cfg["advertise_host"], "tls": self.tls, "label": self.cfg["label"],
            "location": self.cfg["location"],
        }

    def skills_info(self):
        return {"local": [{"name": n, "handler": s["handler"], "visibility": s["visibility"], "price": s["price"],
                           "description": s["description"], "tags": s["tags"]}
                          for n, s in sorted(self.skills.items())], "network": []}

    async def handle_http(self, reader, writer):
        import asyncio
        import hmac
        import time

        self._track()
        status, body, extra, method = 400, {"error": "bad request"}, {}, "GET"
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                head = None
            if head is not None:
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split()
                headers = {}
                for h in lines[1:]:
                    if ":" in h:
                        k, v = h.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = headers.get("content-length", "0")
                if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                    pass
                elif not length.isdigit() or int(length) > MAX_HTTP_BODY:
                    status, body = 413, {"error": "request body too large"}
                else:
                    if int(length):
                        await reader.readexactly(int(length))
                    method, path = parts[0], parts[1].split("?", 1)[0]
                    supplied = headers.get("authorization", "")
                    if method not in ("GET", "HEAD"):
                        status, body = 405, {"error": "method not allowed"}
                        extra["Allow"] = "GET, HEAD"
                    elif path == "/health":
                        status, body = 200, {"status": "ok", "version": VERSION,
                                             "uptime": int(time.monotonic() - self.started)}
                    elif not path.startswith("/api/"):
                        status, body = 404, {"error": "not found"}
                    elif not hmac.compare_digest(supplied.encode(), ("Bearer %s" % self.token).encode()):
                        status, body = 401, {"error": "unauthorized"}
                        extra["WWW-Authenticate"] = 'Bearer realm="knarr-cockpit"'
                    elif path == "/api/status":
                        status, body = 200, self.status()
                    elif path == "/api/skills":
                        status, body = 200, self.skills_info()
                    else:
                        status, body = 404, {"error": "not found"}
            reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                      405: "Method Not Allowed", 413: "Payload Too Large"}[status]
            payload = (json.dumps(body) + "\n").encode()
            hdrs = ["HTTP/1.1 %d %s" % (status, reason), "Content-Type: application/json",
                    "Content-Length: %d" % len(payload), "Connection: close", "Cache-Control: no-store"]
            hdrs += ["%s: %s" % kv for kv in extra.items()]
            writer.write(("\r\n".join(hdrs) + "\r\n\r\n").encode())
            if method != "HEAD":
                writer.write(payload)
            await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass


def _run_handler(skill, input_data, ctx):
    """Run a handler in a worker thread (async ones on a loop of their own), as knarr does."""
    import asyncio

    args = (input_data, ctx) if skill["wants_ctx"] else (input_data,)
    if skill["is_async"]:
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(skill["func"](*args))
        finally:
            loop.close()
    result = skill["func"](*args)
    if asyncio.iscoroutine(result):
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(result)
        finally:
            loop.close()
    return result


async def serve_async(cfg, node, node_ctx, cockpit_ctx):
    import asyncio
    import signal
    import threading

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum, frame):
        # Backstop: whatever a skill handler is doing, be gone within ~0.8 s.
        t = threading.Timer(0.8, os._exit, (EXIT_OK,))
        t.daemon = True
        t.start()
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    servers = []
    try:
        servers.append(await asyncio.start_server(
            node.handle_node, cfg["host"], cfg["port"], ssl=node_ctx,
            ssl_handshake_timeout=10 if node_ctx else None, limit=65536, reuse_address=True))
        if cfg["cockpit_port"]:
            servers.append(await asyncio.start_server(
                node.handle_http, cfg["cockpit_bind"], cfg["cockpit_port"], ssl=cockpit_ctx,
                ssl_handshake_timeout=10 if cockpit_ctx else None, limit=MAX_HTTP_HEADER, reuse_address=True))
    except OSError as e:
        for s in servers:
            s.close()
        raise Refuse(EXIT_RUNTIME, "cannot listen: %s" % e)

    out("Node ID: %s" % node.node_id)
    out("Listening: %s:%d" % (cfg["host"], cfg["port"]))
    if cfg["advertise_host"] and cfg["advertise_host"] != cfg["host"]:
        out("Advertising: %s" % cfg["advertise_host"])
    if cfg["cockpit_port"]:
        out("Cockpit: %s://%s:%d (token: [cockpit] auth_token or .cockpit_token)"
            % ("https" if cockpit_ctx else "http", cfg["cockpit_bind"], cfg["cockpit_port"]))
    log("ready (%s)" % ("TLS" if node_ctx else "plain TCP"))
    await stop.wait()
    log("stopping")
    for s in servers:
        s.close()
    for t in list(node.conn_tasks):
        t.cancel()
    if node.conn_tasks:
        await asyncio.wait(list(node.conn_tasks), timeout=0.3)


def cmd_serve(config_path):
    import asyncio

    cfg = load_config(config_path)
    try:
        import cryptography  # noqa: F401
    except ImportError as e:
        raise Refuse(EXIT_RUNTIME, "python 'cryptography' is not available: %s" % e)
    seed, generated = load_identity(cfg["storage"])
    log("Generated new persistent node identity" if generated else "Loaded persistent node identity")
    keys = Keys(seed)
    node_ctx = node_tls_context(cfg, seed, keys.node_id)
    del seed
    if cfg["bootstrap"]:
        log("bootstrap peers %s are not contacted: the stand-in does not join a network" % len(cfg["bootstrap"]))
    skills = load_skills(cfg, keys.node_id)
    node = Node(cfg, keys, skills)
    node.tls = node_ctx is not None
    cockpit_ctx = None
    if cfg["cockpit_port"]:
        node.token = cockpit_token(cfg)
        cockpit_ctx = cockpit_tls_context(cfg, keys.node_id)
    asyncio.run(serve_async(cfg, node, node_ctx, cockpit_ctx))
    log("stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: nothing to persist, and a stuck handler thread must not delay the exit.
    os._exit(EXIT_OK)


def _ask(host, port, use_tls, msg, timeout=3.0):
    """Send one framed message to a node port and return its (decoded) answer; raises OSError/ValueError."""
    import socket
    import ssl
    import struct
    import time

    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=min(2.0, timeout))
    try:
        if use_tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        if callable(msg):
            msg = msg(sock)
        sock.sendall(frame(msg))
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            if len(buf) >= 4 and struct.unpack(">I", buf[:4])[0] > MAX_MESSAGE_SIZE:
                raise ValueError("answer larger than 1 MiB")
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                raise ValueError("connection closed without an answer")
            buf += chunk
    finally:
        sock.close()
    return json.loads(buf[4:4 + struct.unpack(">I", buf[:4])[0]])


def cmd_health(config_path):
    """A local signed HEARTBEAT: healthy when the node answers it, signed with its own identity."""
    import time

    try:
        cfg = load_config(config_path, warnings=False)
        seed, dummy = load_identity(cfg["storage"], create=False)
        own = Keys(seed).node_id
        del seed
    except Refuse as e:
        print("knarr: unhealthy: %s" % e, file=sys.stderr)
        return EXIT_UNHEALTHY
    host = cfg["host"]
    if host in ("0.0.0.0", "::", "*", "localhost"):
        host = "127.0.0.1"
    me = Keys(os.urandom(32))
    try:
        reply = _ask(host, cfg["port"], cfg["tls"],
                     sign(me, "HEARTBEAT", node_id=me.node_id, timestamp=time.time(), version=VERSION))
    except (OSError, ValueError) as e:
        print("knarr: unhealthy: %s" % e, file=sys.stderr)
        return EXIT_UNHEALTHY
    if (isinstance(reply, dict) and reply.get("type") == "HEARTBEAT" and verify(reply)
            and node_id_of(reply["public_key"]) == own):
        print("knarr: healthy %s" % own)
        return EXIT_OK
    print("knarr: unhealthy: the node port answered, but not with a HEARTBEAT signed by this node", file=sys.stderr)
    return EXIT_UNHEALTHY


def cmd_echo(host, port, node_id=None, text="hello", use_tls=True, timeout=5.0):
    """A client, as another peer calls a node: a signed TASK_REQUEST for the echo skill to ``host:port`` (from
    wherever this runs -- e.g. a node's container on another Docker host), with a fresh identity.  Prints one JSON
    line; exit 0 when the answer is a TASK_RESULT signed by ``node_id`` (when given), completed, echoing ``text``."""
    import uuid

    me = Keys(os.urandom(32))

    def request(sock):
        local = sock.getsockname()
        return sign(me, "TASK_REQUEST", task_id=str(uuid.uuid4()), requester_node_id=me.node_id,
                    requester_host=str(local[0]), requester_port=int(local[1]) or 9, skill_name="echo",
                    input_data={"text": text}, timeout_ms=int(timeout * 1000), mode="sync")

    try:
        reply = _ask(host, port, use_tls, request, timeout)
    except (OSError, ValueError) as e:
        print(json.dumps(dict(ok=False, error=str(e))))
        return EXIT_UNHEALTHY
    signed = isinstance(reply, dict) and verify(reply)
    answered_by = node_id_of(reply["public_key"]) if signed else None
    ok = (signed and reply.get("type") == "TASK_RESULT" and reply.get("status") == "completed"
          and (reply.get("output_data") or {}).get("text") == text and (node_id is None or answered_by == node_id))
    print(json.dumps(dict(ok=bool(ok), node_id=answered_by, signed=bool(signed), type=(reply or {}).get("type"),
                          status=(reply or {}).get("status"), output=(reply or {}).get("output_data"))))
    return EXIT_OK if ok else EXIT_UNHEALTHY


USAGE = """usage: knarr serve  --config PATH
       knarr health --config PATH
       knarr echo   --host HOST --port PORT [--node-id ID] [--text TEXT] [--plain]
       knarr --version"""


def _echo_main(rest):
    opts = {"--host": None, "--port": None, "--node-id": None, "--text": "hello"}
    plain, i = False, 0
    while i < len(rest):
        if rest[i] == "--plain":
            plain, i = True, i + 1
        elif rest[i] in opts and i + 1 < len(rest):
            opts[rest[i]], i = rest[i + 1], i + 2
        else:
            print("knarr: unknown argument %r\n%s" % (rest[i], USAGE), file=sys.stderr)
            return EXIT_CONFIG
    if not opts["--host"] or not (opts["--port"] or "").isdigit():
        print("knarr: echo needs --host and --port\n%s" % USAGE, file=sys.stderr)
        return EXIT_CONFIG
    return cmd_echo(opts["--host"], int(opts["--port"]), opts["--node-id"], opts["--text"], use_tls=not plain)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["--version"], ["version"]):
        print("knarr %s (fenrir.fleet stand-in)" % VERSION)
        return EXIT_OK
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return EXIT_OK if argv else EXIT_CONFIG
    cmd, rest = argv[0], argv[1:]
    if cmd == "echo":
        return _echo_main(rest)
    config = None
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--config" and i + 1 < len(rest):
            config, i = rest[i + 1], i + 2
        elif a.startswith("--config="):
            config, i = a.split("=", 1)[1], i + 1
        else:
            print("knarr: unknown argument %r\n%s" % (a, USAGE), file=sys.stderr)
            return EXIT_CONFIG
    if config is None:
        config = "knarr.toml"
    if cmd == "health":
        return cmd_health(config)
    if cmd != "serve":
        print("knarr: unknown command %r\n%s" % (cmd, USAGE), file=sys.stderr)
        return EXIT_CONFIG
    try:
        cmd_serve(config)
    except Refuse as e:
        print("knarr: refusing to start: %s" % e, file=sys.stderr, flush=True)
        return e.status
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
