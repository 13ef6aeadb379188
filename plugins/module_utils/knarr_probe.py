# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proof of life, in knarr's own protocol: the node proves who it is and that its echo skill runs.

One attempt (:func:`probe_once`) is one connection -- TLS unless told otherwise -- with two requests on it:

1. a signed HEARTBEAT.  The answer must be a HEARTBEAT whose signature verifies, whose key hashes to the
   node id we expect (sha256 of the verify key is what knarr calls a node id), and -- with TLS -- whose
   key is the very key of the certificate the node presented (knarr keys that certificate by the node's
   seed), so the transport and the messages come from the same identity;
2. a signed TASK_REQUEST for the ``echo`` skill with a fresh random text.  The answer must be a
   TASK_RESULT signed by that same key, for our task id, ``status: completed``, echoing exactly our text.

Anything else is a :class:`ProbeError` naming what the node answered.  An answer from another identity
(or a certificate keyed otherwise) is a :class:`WrongIdentity`, which :func:`wait_until_alive` does not
retry: waiting will not change who answers.  Everything else (refused, closed, unsigned, an error code
such as UNKNOWN_SKILL while the node is still loading its skills) is retried until the deadline.
"""

from __future__ import annotations

import os
import time

from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_wire as wire


class ProbeError(Exception):
    pass


class WrongIdentity(ProbeError):
    """The node answered, but not as the identity we expect.  Its message contains "wrong identity"."""


def _identity(identity):
    """The identity a probe signs with: the provisioner's (a node knows it from its [peer_overrides]).  There
    is no default: a probe that signs with a throw-away key must say so (``wire.Identity.generate()``)."""
    if identity is None:
        raise ValueError("a probe signs with the provisioner's identity: give identity= (an Identity or a seed)")
    return wire.as_identity(identity)


def _describe_error(error):
    if not isinstance(error, dict) or not error:
        return "no error detail"
    code = error.get("code") or "?"
    text = "%s: %s" % (code, error.get("message") or wire.ERROR_CODES.get(code, "no message"))
    meaning = wire.ERROR_CODES.get(code)
    return text + (" (%s)" % meaning if meaning and meaning not in text else "")


def _answer(conn, what, call):
    """Run one exchange; protocol failures become ProbeErrors that say where it broke."""
    try:
        return call()
    except wire.ConnectionClosed:
        raise ProbeError("closed the connection without answering the %s (a knarr node drops, without a word, "
                         "what it cannot verify or parse%s)" % (
                             what, "" if conn.tls else "; with [node] tls = true it expects TLS"))
    except wire.FrameTooLarge as exc:
        raise ProbeError("%s: %s" % (what, exc))
    except wire.WireError as exc:
        raise ProbeError("%s %s" % (what, exc))


def _check_signed(reply, what):
    if not reply.get("signature") or not reply.get("public_key"):
        raise ProbeError("answered the %s with an unsigned %s" % (what, reply.get("type") or "message"))
    if not wire.verify(reply):
        raise ProbeError("answered the %s with a %s whose signature does not verify (key %s)"
                         % (what, reply.get("type") or "message", str(reply.get("public_key"))[:64]))


def _check_heartbeat(reply, expected_node_id, conn):
    if reply.get("type") != "HEARTBEAT":
        extra = ""
        if reply.get("type") == "ACK":
            extra = ": %s" % (reply.get("error_detail") or reply.get("status"))
        raise ProbeError("answered the HEARTBEAT with %s%s" % (reply.get("type") or "an untyped message", extra))
    _check_signed(reply, "HEARTBEAT")
    signer = wire.signer_node_id(reply)
    claimed = reply.get("node_id")
    if claimed and claimed != signer:
        raise WrongIdentity("wrong identity: the HEARTBEAT claims node_id %s but is signed by node %s"
                            % (claimed, signer))
    if expected_node_id and signer != expected_node_id:
        raise WrongIdentity("wrong identity: node %s answered, expected %s" % (signer, expected_node_id))
    cert_node_id = None
    if conn.tls:
        if conn.peer_key is None:
            raise WrongIdentity("wrong identity: its TLS certificate has no Ed25519 key (%s); a knarr node keys "
                                "it by its own seed" % (conn.peer_key_type or "no certificate"))
        cert_node_id = wire.node_id_from_public_key(conn.peer_key)
        if cert_node_id != signer:
            raise WrongIdentity("wrong identity: its TLS certificate belongs to node %s, its HEARTBEAT to node %s "
                                "(a cert.pem left from another identity?)" % (cert_node_id, signer))
    return signer, cert_node_id


def _check_echo(reply, sent, token, signer):
    rtype = reply.get("type")
    if rtype == "TASK_STATUS":
        raise ProbeError("answered the echo call with TASK_STATUS %s (position %s) instead of a result"
                         % (reply.get("status"), reply.get("position")))
    if rtype == "ACK":
        raise ProbeError("answered the echo call with ACK %s: %s" % (reply.get("status"), reply.get("error_detail")))
    if rtype != "TASK_RESULT":
        raise ProbeError("answered the echo call with %s" % (rtype or "an untyped message"))
    _check_signed(reply, "echo call")
    if wire.signer_node_id(reply) != signer:
        raise WrongIdentity("wrong identity: the echo result is signed by node %s, the HEARTBEAT by node %s"
                            % (wire.signer_node_id(reply), signer))
    if reply.get("task_id") != sent["task_id"]:
        raise ProbeError("answered the echo call for task %r, not ours" % (reply.get("task_id"),))
    if reply.get("status") != "completed":
        raise ProbeError("echo call %s: %s" % (reply.get("status") or "not completed", _describe_error(reply.get("error"))))
    output = reply.get("output_data")
    got = output.get("text") if isinstance(output, dict) else None
    if got != token:
        raise ProbeError("echo skill answered %r instead of the text it was sent" % (
            got if got is not None else output,))


def probe_once(ip, port, expected_node_id=None, timeout=2.0, *, identity, tls=True):
    """One attempt: HEARTBEAT, then echo of a fresh text, on one connection.  Returns the node's status.

    ``identity`` signs the probe's messages: the provisioner's identity (an ``Identity``, or its 32-byte
    seed), the key the node's ``[peer_overrides]`` names.  ``tls=False`` for a node with ``[node] tls = false``.  The status dict holds
    ``node_id``, ``public_key``, ``version``, ``min_protocol_version``, ``tls``, ``cert_node_id`` (None
    without TLS) and ``echo_ms``.  Raises :class:`ProbeError` (:class:`WrongIdentity` for another identity)
    or OSError (refused, unreachable, timed out, TLS handshake failed).
    """
    ident = _identity(identity)
    deadline = time.monotonic() + timeout
    token = "fenrir-proof-of-life-%s" % os.urandom(8).hex()
    conn = wire.KnarrConnection(ip, port, identity=ident, tls=tls, timeout=timeout)
    try:
        conn.connect()
    except wire.TLSHandshakeError as exc:
        raise ProbeError("%s (a node with [node] tls = false speaks plain TCP)" % exc)
    with conn:
        hb = _answer(conn, "HEARTBEAT", lambda: conn.heartbeat(max(0.05, deadline - time.monotonic())))
        signer, cert_node_id = _check_heartbeat(hb, expected_node_id, conn)
        t0 = time.monotonic()
        budget = max(0.05, deadline - t0)
        result = _answer(conn, "echo call", lambda: conn.call_skill(
            "echo", {"text": token}, timeout_ms=max(1000, int(budget * 1000)), timeout=budget))
        _check_echo(result, conn.last_sent, token, signer)
        echo_ms = (time.monotonic() - t0) * 1000.0
    return {
        "node_id": signer,
        "public_key": hb.get("public_key"),
        "version": hb.get("version"),
        "min_protocol_version": hb.get("min_protocol_version"),
        "tls": bool(tls),
        "cert_node_id": cert_node_id,
        "echo_ms": round(echo_ms, 3),
    }


def wait_until_alive(ip, port, expected_node_id=None, timeout=60.0, interval=0.05, still_running=None, *,
                     identity, tls=True):
    """Poll until the node proves itself (see :func:`probe_once`), or ``timeout`` seconds pass.

    ``still_running`` (optional callable) is asked about once a second; when it returns a string the wait
    stops early with that reason (e.g. the container exited).  A :class:`WrongIdentity` stops it at once.
    Returns (status_dict, seconds_waited); raises ProbeError naming the last thing that went wrong.
    """
    ident = _identity(identity)
    start = time.monotonic()
    deadline = start + timeout
    last_error = "no attempt made"
    next_check = start + 1.0
    while True:
        try:
            attempt = min(2.0, max(0.2, deadline - time.monotonic()))
            return probe_once(ip, port, expected_node_id, timeout=attempt, identity=ident, tls=tls), \
                time.monotonic() - start
        except WrongIdentity:
            raise
        except ProbeError as exc:
            last_error = str(exc)
        except (OSError, ValueError) as exc:
            last_error = exc.strerror if getattr(exc, "strerror", None) else (str(exc) or type(exc).__name__)
        now = time.monotonic()
        if still_running is not None and now >= next_check:
            next_check = now + 1.0
            reason = still_running()
            if reason:
                raise ProbeError("%s (last probe: %s)" % (reason, last_error))
        if now >= deadline:
            raise ProbeError("did not answer on %s:%d within %ss (last error: %s)" % (ip, port, timeout, last_error))
        time.sleep(interval)
