# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client for knarr's own node protocol, as knarr v0.57 speaks it.

Why this exists: a node is only proven alive when it answers in its own protocol, signed with its own
key, so the boot check must be a real knarr client -- one that a node built from knarr's modules accepts
and whose answers it can verify.  Everything here was written from a reading of knarr's sources
(knarrnet/knarr: ``core/messages.py``, ``core/crypto.py``, ``dht/protocol.py``, ``dht/node.py``,
``mail/tls.py``); nothing is imported from knarr, which is not a dependency.  Only the standard library
and ``cryptography`` are used.

The protocol in four rules:

* **Transport.**  TCP, by default wrapped in TLS (``[node] tls = true``).  The server's certificate is
  self-signed and keyed by the node's own Ed25519 seed; knarr's clients do not verify it (``CERT_NONE``,
  no host name check) because identity is proven by signatures.  A client that knows whom it expects can
  additionally check that the certificate's key *is* the node's verify key: :attr:`KnarrConnection.peer_key`.
* **Framing.**  A 4-byte big-endian length, then that many bytes of UTF-8 JSON; at most 1 MiB.
* **Envelope.**  A JSON object with every field of its message type plus ``type``, ``msg_id`` (a fresh
  uuid4: a node refuses a replayed TASK_REQUEST), ``public_key`` (64 hex) and ``signature`` (128 hex).
* **Signature.**  Ed25519 over the *canonical form*: the message with ``public_key`` set and ``signature``
  set to ``""`` (kept), without the fields of :data:`SIGNATURE_EXCLUDED_FIELDS`, serialised with sorted keys,
  separators ``,`` and ``:`` and ASCII escapes.  A receiver rebuilds that form from **its own** field list
  with defaults (unknown fields dropped, missing ones filled in), so a sender must send exactly the fields
  of the receiver's version, or the signature does not verify and the node drops the message without a
  word.  :data:`MESSAGE_FIELDS` holds v0.57's lists.

Secrets: an :class:`Identity` holds an Ed25519 seed.  It never appears in a repr, a message or an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import ssl
import struct
import time
import uuid

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    HAS_CRYPTOGRAPHY = True
except ImportError:  # modules say so before they get here (module_runner, REQUIREMENTS)
    HAS_CRYPTOGRAPHY = False
    InvalidSignature = ValueError
    Ed25519PrivateKey = Ed25519PublicKey = Encoding = PublicFormat = None

#: The knarr version whose wire format this module speaks (announced in our HEARTBEAT).
PROTOCOL_VERSION = "0.57.0"

#: Frame cap (``dht/protocol.py`` MAX_MESSAGE_SIZE): a larger length prefix is a protocol error.
MAX_MESSAGE_SIZE = 1048576

#: Fields left out of the canonical form (``core/messages.py`` SIGNATURE_EXCLUDED_FIELDS; ``signature``
#: itself is kept, as ``""``).  None of them occurs in HEARTBEAT's signed part except ``version`` and
#: ``min_protocol_version``, in TASK_REQUEST except ``mode``, in TASK_RESULT except ``receipt``.
SIGNATURE_EXCLUDED_FIELDS = frozenset((
    "hops", "ephemeral", "load", "sidecar_port", "version", "min_protocol_version", "mode", "peer_count",
    "batch_seq", "encryption_key", "receipt", "provider_host", "provider_port", "wallet", "has_wallet",
    "jurisdiction",
))

#: Fields every message carries (the ``Message`` base dataclass).
ENVELOPE_FIELDS = ("type", "msg_id", "public_key", "signature")

#: v0.57's field lists with their defaults, per message type, as a v0.57 receiver rebuilds them.
#: HEARTBEAT gained ``punchhole_epoch`` (v0.55, signed), TASK_REQUEST ``target_identity`` (v0.55) and
#: ``uri`` (v0.56), both signed: a sender that leaves them out is dropped by a v0.57 node.
MESSAGE_FIELDS = {
    "HEARTBEAT": (("node_id", ""), ("timestamp", 0.0), ("version", ""), ("min_protocol_version", ""),
                  ("punchhole_epoch", 0)),
    "TASK_REQUEST": (("task_id", ""), ("requester_node_id", ""), ("requester_host", ""), ("requester_port", 0),
                     ("skill_name", ""), ("input_data", {}), ("timeout_ms", 30000), ("mode", "sync"),
                     ("target_identity", ""), ("uri", "")),
    "TASK_RESULT": (("task_id", ""), ("status", ""), ("output_data", {}), ("error", {}), ("receipt", "")),
    "TASK_STATUS": (("task_id", ""), ("status", ""), ("reason", ""), ("position", 0)),
    "ACK": (("status", ""), ("error_detail", None)),
}

#: Error codes a node puts in ``TASK_RESULT.error.code``, and what they mean for a caller.
ERROR_CODES = {
    "DUPLICATE_REQUEST": "the msg_id was seen before (a replay)",
    "VERSION_GATED": "the node is below the network's minimum protocol version",
    "RETRY_AFTER": "the node is busy or upgrading; try again later",
    "URI_MISMATCH": "the request's uri or target_identity does not address this node's skill",
    "UNKNOWN_SKILL": "the node has no handler for that skill (not loaded, or not yet)",
    "INPUT_TOO_LARGE": "the input exceeds the skill's max_input_size",
    "INVALID_INPUT": "a key of the skill's input_schema is missing",
    "INVALID_REQUEST": "requester_host/requester_port are not a usable address",
    "ACCESS_DENIED": "the skill is private, or whitelisted for other nodes",
    "ADMISSION_BLOCKED": "the caller's credit would fall below the node's hard limit",
    "PROVIDER_BUSY": "the node's task queue is full",
    "TIMEOUT": "the handler did not finish in time",
    "HANDLER_ERROR": "the skill's handler raised an error",
}


class WireError(Exception):
    """The peer broke the protocol, or the connection ended where an answer was due."""


class ConnectionClosed(WireError):
    """The peer closed the connection (a knarr node closes, without a word, on what it cannot verify)."""


class FrameTooLarge(WireError):
    """A length prefix above :data:`MAX_MESSAGE_SIZE`."""


class TLSHandshakeError(WireError):
    """The TLS handshake failed (a plain-TCP node, ``[node] tls = false``, closes on a ClientHello)."""


# --------------------------------------------------------------------------------------------- identity

def public_key_bytes(key):
    """Raw 32 bytes of an Ed25519 public key given as bytes, hex text or a key object."""
    if isinstance(key, Ed25519PublicKey):
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    if isinstance(key, str):
        key = bytes.fromhex(key)
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return bytes(key)


def node_id_from_public_key(key):
    """A knarr node id: the lowercase hex SHA-256 of the raw Ed25519 verify key."""
    return hashlib.sha256(public_key_bytes(key)).hexdigest()


class Identity(object):
    """An Ed25519 key pair built from a 32-byte seed (knarr's ``node_identity.key_bytes``).

    The key is derived once here; sign with :meth:`sign` as often as needed.  The seed is not kept as an
    attribute and never shown: ``repr()`` names only the node id.
    """

    __slots__ = ("_private", "public_key", "public_key_hex", "node_id")

    def __init__(self, seed):
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
            raise ValueError("an identity seed is 32 bytes")
        self._private = Ed25519PrivateKey.from_private_bytes(bytes(seed))
        self.public_key = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key_hex = self.public_key.hex()
        self.node_id = hashlib.sha256(self.public_key).hexdigest()

    @classmethod
    def generate(cls):
        """A fresh, throw-away identity (a probe that has none of its own)."""
        return cls(os.urandom(32))

    def sign(self, data):
        return self._private.sign(data)

    def __repr__(self):
        return "Identity(node_id=%s)" % self.node_id


def as_identity(identity):
    """An :class:`Identity` from one, from a 32-byte seed, or a fresh one for ``None``."""
    if identity is None:
        return Identity.generate()
    if isinstance(identity, Identity):
        return identity
    return Identity(identity)


# ------------------------------------------------------------------------------------------- messages

def new_message(msg_type, **fields):
    """A complete, unsigned message of ``msg_type``: every v0.57 field, defaults for those not given.

    Unknown fields are refused here: a v0.57 receiver would drop them from its canonical form, and the
    signature would not verify.
    """
    schema = MESSAGE_FIELDS.get(msg_type)
    if schema is None:
        raise ValueError("unknown message type %r" % (msg_type,))
    names = dict(schema)
    unknown = set(fields) - set(names) - set(ENVELOPE_FIELDS)
    if unknown:
        raise ValueError("%s has no field %s" % (msg_type, ", ".join(sorted(unknown))))
    message = {"type": msg_type, "msg_id": fields.pop("msg_id", None) or str(uuid.uuid4()),
               "public_key": fields.pop("public_key", ""), "signature": fields.pop("signature", "")}
    for name, default in schema:
        value = fields[name] if name in fields else default
        message[name] = json.loads(json.dumps(value)) if isinstance(value, (dict, list)) else value
    return message


def rebuild(message):
    """The message as a v0.57 receiver sees it: only its type's fields, defaults for missing ones.

    ``core/messages.py`` deserialises into the type's dataclass (``SA-07`` filter: unknown keys dropped)
    and signs/verifies ``asdict()`` of it -- this is that dict.  Raises ValueError for an unknown type.
    """
    schema = MESSAGE_FIELDS.get(message.get("type"))
    if schema is None:
        raise ValueError("unknown message type %r" % (message.get("type"),))
    out = {"type": message["type"], "msg_id": message.get("msg_id", ""),
           "public_key": message.get("public_key", ""), "signature": message.get("signature", "")}
    for name, default in schema:
        out[name] = message[name] if name in message else default
    return out


def canonical_bytes(message):
    """The bytes an Ed25519 signature covers (see the module docstring).  ``public_key`` must be set."""
    data = dict(message)
    data["signature"] = ""
    for name in SIGNATURE_EXCLUDED_FIELDS:
        data.pop(name, None)
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(message, identity):
    """A copy of ``message`` with ``public_key`` and ``signature`` set by ``identity``."""
    signed = dict(message)
    signed["public_key"] = identity.public_key_hex
    signed["signature"] = ""
    signed["signature"] = identity.sign(canonical_bytes(signed)).hex()
    return signed


def verify(message, as_received=True):
    """Whether ``message`` carries a valid signature of its own ``public_key``.

    ``as_received=True`` checks the signature over the fields that arrived (what the sender signed,
    whatever its version); ``False`` checks it the way a v0.57 receiver does, over :func:`rebuild`.
    """
    public_key, signature = message.get("public_key"), message.get("signature")
    if not isinstance(public_key, str) or not isinstance(signature, str) or not public_key or not signature:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        sig = bytes.fromhex(signature)
        body = canonical_bytes(message if as_received else rebuild(message))
        key.verify(sig, body)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def signer_node_id(message):
    """sha256 of the message's ``public_key`` (None when it is not a 32-byte hex key)."""
    try:
        return node_id_from_public_key(message.get("public_key") or "")
    except ValueError:
        return None


# -------------------------------------------------------------------------------------------- framing

def encode_frame(message):
    """A length-prefixed frame (``dht/protocol.py`` send_message: ``json.dumps``, ASCII escapes)."""
    body = json.dumps(message).encode("utf-8")
    if len(body) > MAX_MESSAGE_SIZE:
        raise FrameTooLarge("message of %d bytes exceeds the 1 MiB frame limit" % len(body))
    return struct.pack(">I", len(body)) + body


def read_exactly(sock, count, deadline=None):
    """Exactly ``count`` bytes from ``sock``; ConnectionClosed on EOF, socket.timeout past ``deadline``."""
    chunks, got = [], 0
    while got < count:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out")
            sock.settimeout(left)
        chunk = sock.recv(min(count - got, 262144))
        if not chunk:
            raise ConnectionClosed("connection closed after %d of %d bytes" % (got, count))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(sock, deadline=None):
    """One message (a dict) from ``sock``; enforces the 1 MiB cap before reading the body."""
    try:
        header = read_exactly(sock, 4, deadline)
    except ConnectionClosed:
        raise ConnectionClosed("connection closed without an answer")
    (length,) = struct.unpack(">I", header)
    if length > MAX_MESSAGE_SIZE:
        raise FrameTooLarge("announced a frame of %d bytes (limit 1 MiB)" % length)
    body = read_exactly(sock, length, deadline)
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WireError("answered a frame that is not UTF-8 JSON")
    if not isinstance(message, dict):
        raise WireError("answered JSON that is not an object")
    return message


# ----------------------------------------------------------------------------------------------- TLS

_CLIENT_CONTEXT = None


def client_tls_context():
    """The TLS client context knarr's peers use: TLS >= 1.2, no certificate or host name verification.

    Built without loading the system's CA store (nothing is verified against it), and once per process:
    both make a probe's handshake cheap.
    """
    global _CLIENT_CONTEXT
    if _CLIENT_CONTEXT is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        _CLIENT_CONTEXT = ctx
    return _CLIENT_CONTEXT


def certificate_key(der):
    """(raw Ed25519 public key or None, key type name) of a DER certificate."""
    from cryptography import x509
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None, "unparsable certificate"
    if isinstance(key, Ed25519PublicKey):
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw), "Ed25519"
    return None, type(key).__name__.lstrip("_")


# --------------------------------------------------------------------------------------- connection

class KnarrConnection(object):
    """One connection to a knarr node: TLS by default, many request/answer pairs on it.

    ``identity`` (an :class:`Identity` or a 32-byte seed) signs what is sent; without one a throw-away
    identity is made.  ``timeout`` bounds connecting, the handshake and each exchange.
    """

    def __init__(self, host, port, identity=None, tls=True, timeout=5.0):
        self.host, self.port, self.tls, self.timeout = host, int(port), bool(tls), float(timeout)
        self.identity = as_identity(identity)
        self.sock = None
        self.peer_certificate = None  # DER, with TLS
        self.peer_key = None  # the certificate's raw Ed25519 key, when it has one
        self.peer_key_type = None
        self.local_address = None
        self.last_sent = None  # the last signed message sent (its msg_id, task_id, ...)

    def connect(self):
        deadline = time.monotonic() + self.timeout
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.local_address = sock.getsockname()[:2]
            if self.tls:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    sock = client_tls_context().wrap_socket(sock, server_side=False)
                except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
                    raise TLSHandshakeError("TLS handshake failed: %s" % (getattr(exc, "reason", None) or exc))
                self.peer_certificate = sock.getpeercert(binary_form=True)
                if self.peer_certificate:
                    self.peer_key, self.peer_key_type = certificate_key(self.peer_certificate)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        return self

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        if self.sock is None:
            self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, message):
        """Sign ``message`` (a dict from :func:`new_message`) and send it; returns what was sent."""
        signed = sign(message, self.identity)
        self.sock.settimeout(self.timeout)
        self.sock.sendall(encode_frame(signed))
        self.last_sent = signed
        return signed

    def receive(self, timeout=None):
        return read_frame(self.sock, time.monotonic() + (self.timeout if timeout is None else timeout))

    def request(self, message, timeout=None):
        """Send one signed message and read one answer (not verified here: see :func:`verify`)."""
        self.send(message)
        return self.receive(timeout)

    def heartbeat(self, timeout=None):
        """A signed HEARTBEAT; the node answers with its own signed HEARTBEAT."""
        return self.request(new_message(
            "HEARTBEAT", node_id=self.identity.node_id, timestamp=time.time(), version=PROTOCOL_VERSION,
            min_protocol_version="", punchhole_epoch=0), timeout)

    def call_skill(self, skill_name, input_data, timeout_ms=30000, mode="sync", target_identity="", uri="",
                   timeout=None):
        """A signed TASK_REQUEST; the node answers TASK_RESULT (or TASK_STATUS for queued work).

        ``requester_host``/``requester_port`` must be a usable address for the node to accept the call
        (it would send a slow task's result there); the local end of this connection is one.
        """
        host, port = self.local_address or ("127.0.0.1", 1)
        return self.request(new_message(
            "TASK_REQUEST", task_id=str(uuid.uuid4()), requester_node_id=self.identity.node_id,
            requester_host=host, requester_port=port or 1, skill_name=skill_name, input_data=input_data,
            timeout_ms=int(timeout_ms), mode=mode, target_identity=target_identity, uri=uri), timeout)


def connect(host, port, identity=None, tls=True, timeout=5.0):
    """An open :class:`KnarrConnection` (use it as a context manager)."""
    return KnarrConnection(host, port, identity=identity, tls=tls, timeout=timeout).connect()
