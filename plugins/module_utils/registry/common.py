# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every room of the registry shares: the constants of the schema, the error type, the record views
(public and audited), and the scrubbing of free text before it is kept forever."""

from __future__ import annotations

import base64
import getpass
import hashlib
import ipaddress
import json
import os
import re
import socket

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError

# 1: the original skill's fleet_nodes; 2: nodes + audit; 3: + pool_cursor; 4: held_runs, audit index by
# label, registry_meta; 5: hosts, tenants, registry_secrets, per-node host/network/port/image columns,
# audit entries keyed (HMAC) with a kind, secrets bound to their row, an anchor of the chain's head.
SCHEMA_VERSION = 5
STATUSES = ("provisioning", "running", "online", "failed", "destroyed")
ACTIVE_STATUSES = ("provisioning", "running", "online", "failed")
HOST_STATUSES = ("pending", "connected", "disconnected", "decommissioned")
TENANT_STATUSES = ("provisioning", "running", "starting", "stopped", "failed", "destroyed")
NETWORK_MODES = ("bridge", "host")
DEFAULT_SUBNET = "172.21.0.0/24"
DEFAULT_GATEWAY = "172.21.0.1"
DEFAULT_POOL_START = "172.21.0.10"
DEFAULT_POOL_END = "172.21.0.249"
DEFAULT_FLEET_RANGE = "172.21.0.0/16"  # host subnets (/24 each) come from here; the local engine keeps .0/24
GENESIS_HASH = "0" * 64
LIVE_WITHOUT_ADDRESS = ("failed", "destroyed")  # the only statuses a record without an address may have
SCRUB_PENDING = "scrub_pending"  # registry_meta key: adopted plain text not yet wiped from the file
FORMER_LOCATIONS = "former_locations"  # registry_meta key: the registries this one was copied from (JSON list)

# Columns of the node record, in order.  ``secrets`` is a Fernet token and never leaves the package in clear;
# ``ip_int`` is the reservation (NULL = no address held).
COLUMNS = (
    "label", "server_id", "provider", "location", "ip", "ip_int", "node_id",
    "container_id", "nonce", "status", "reason", "secrets",
    "created_at", "updated_at", "last_seen", "report_received_at",
    "docker_host", "network_mode", "port", "image", "image_id", "previous_image", "previous_image_id",
)
V4_COLUMNS = COLUMNS[:16]
PUBLIC_COLUMNS = tuple(c for c in COLUMNS if c not in ("secrets", "ip_int"))
MUTABLE_FIELDS = ("server_id", "provider", "location", "nonce", "node_id", "container_id",
                  "status", "reason", "last_seen", "report_received_at",
                  "docker_host", "network_mode", "image", "image_id", "previous_image", "previous_image_id")
HOST_COLUMNS = ("name", "address", "endpoint", "subnet", "subnet_int", "cert_fingerprint", "cert_not_after",
                "engine_version", "status", "reason", "max_nodes", "memory_bytes", "created_at", "updated_at")
HOST_FIELDS = ("address", "endpoint", "cert_fingerprint", "cert_not_after", "engine_version", "status", "reason",
               "max_nodes", "memory_bytes")
TENANT_COLUMNS = ("tenant_id", "prefix", "docker_host", "container_name", "container_id", "image", "image_id",
                  "spec_digest", "spec", "status", "reason", "exit_code", "created_at", "updated_at")
TENANT_FIELDS = ("prefix", "docker_host", "container_name", "container_id", "image", "image_id", "status",
                 "reason", "exit_code")
SECRET_COLUMNS = ("name", "secret", "created_at", "updated_at")

# Each kind of record: its table, key column, columns and the column holding its encrypted data.
KINDS = {
    "node": ("nodes", "label", COLUMNS, "secrets"),
    "host": ("hosts", "name", HOST_COLUMNS, None),
    "tenant": ("tenants", "tenant_id", TENANT_COLUMNS, "spec"),
    "secret": ("registry_secrets", "name", SECRET_COLUMNS, "secret"),
}


class RegistryError(FleetError):
    """Bad input or a refused change.  ``label`` and ``field`` say where (``kind``: node, host, tenant)."""


# --------------------------------------------------------------------------- views

def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def audit_view(row, kind="node"):
    """What the audit trail records of a record: every column, the encrypted data only as a digest."""
    if row is None:
        return None
    _table, _key, columns, secret = KINDS[kind]
    view = {c: row[c] for c in columns if c != secret and c in row}
    if secret is not None:
        blob = row.get(secret) if hasattr(row, "get") else row[secret]
        view[secret + "_sha256"] = hashlib.sha256(bytes(blob)).hexdigest() if blob else None
    return view


def as_view(row, kind="node"):
    if row is None:
        return None
    _table, _key, _columns, secret = KINDS[kind]
    if isinstance(row, dict) and secret is not None and secret + "_sha256" in row:
        return row
    return audit_view(row, kind)


def public(row):
    """A node record as modules return it: no secrets, no internal columns."""
    view = {c: row[c] for c in PUBLIC_COLUMNS if c in row}
    view["has_identity"] = bool(row["secrets"])
    view["address_held"] = row["ip_int"] is not None
    return view


def differing(a, b):
    a, b = a or {}, b or {}
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def problem(count, message, height, label, kind=None):
    return dict(ok=False, entries=count, problem=message, height=height, label=label)


def jsonable(data):
    out = {}
    for k, v in data.items():
        out[k] = base64.b64encode(v).decode("ascii") if isinstance(v, (bytes, bytearray, memoryview)) else v
    return out


def runs_of(sorted_ints):
    """Maximal runs (first, last) of consecutive integers in an ascending sequence."""
    start = last = None
    for n in sorted_ints:
        if last is not None and n == last + 1:
            last = n
            continue
        if start is not None:
            yield start, last
        start = last = n
    if start is not None:
        yield start, last


def span(run):
    if run is None:
        return "nothing more"
    first, last = (str(ipaddress.IPv4Address(n)) for n in run)
    return first if first == last else "%s-%s" % (first, last)


def default_actor():
    if os.environ.get("FENRIR_ACTOR"):
        return os.environ["FENRIR_ACTOR"]
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        user = str(os.getuid())
    actor = "%s@%s" % (user, socket.gethostname())
    job = os.environ.get("AWX_JOB_ID") or os.environ.get("TOWER_JOB_ID")
    if job:
        actor += " job=%s" % job
    return actor


# --------------------------------------------------------------------------- free text kept forever

REASON_MAX = 500
_LOG_TAIL = re.compile(r"(exited with code \S+?(?:, restarted \d+ times)?) \((.*)\)", re.S)
_SECRET_PAIR = re.compile(r"(?i)\b([\w.-]*(?:password|passwd|secret|token|auth|api[_-]?key|private[_-]?key|seed)"
                          r"[\w.-]*)(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)")
_BEARER = re.compile(r"(?i)\b(bearer)\s+\S+")
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_-])(?=[A-Za-z0-9+/_-]*[A-Z])(?=[A-Za-z0-9+/_-]*[a-z])"
                         r"(?=[A-Za-z0-9+/_-]*[0-9])[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/=_-])")
_DSN_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@")


def clean_reason(text):
    """A reason as the registry keeps it, in the record and in the audit trail, for ever.

    Container log lines (what a node printed before it died) are cut out -- they are read with
    ``docker logs``, not kept; values of secret-looking keys (``token=``, ``password:``), bearer tokens,
    long random-looking strings and DSN passwords are masked; at most one line of REASON_MAX characters
    is kept."""
    if text is None:
        return None
    text = str(text)
    text = _LOG_TAIL.sub(lambda m: "%s (its log lines are not kept in the registry: see docker logs)" % m.group(1),
                         text)
    text = _DSN_PASSWORD.sub(r"\1***@", text)
    text = _BEARER.sub(r"\1 ***", text)
    text = _SECRET_PAIR.sub(lambda m: m.group(1) + m.group(2) + "***", text)
    text = _LONG_TOKEN.sub("***", text)
    text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    if len(text) > REASON_MAX:
        text = text[:REASON_MAX - 3] + "..."
    return text
