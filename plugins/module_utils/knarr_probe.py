# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proof of life: ask a knarr node for its status and call its echo skill.

The node port speaks newline-delimited JSON: ``{"op": "status"}`` and
``{"op": "call", "skill": "echo", "input": {...}}``, one response line each.
"""

from __future__ import annotations

import json
import os
import socket
import time


class ProbeError(Exception):
    pass


def _request(sock_file, sock, message):
    sock.sendall((json.dumps(message) + "\n").encode("utf-8"))
    line = sock_file.readline(1 << 20)
    if not line:
        raise ProbeError("connection closed without an answer")
    try:
        return json.loads(line)
    except ValueError:
        raise ProbeError("answered something that is not JSON")


def probe_once(ip, port, expected_node_id=None, timeout=2.0):
    """One attempt: status, then echo of a fresh token.  Returns the node's status dict."""
    token = "fenrir-proof-of-life-%s" % os.urandom(6).hex()
    with socket.create_connection((ip, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        with sock.makefile("rb") as fh:
            status = _request(fh, sock, {"op": "status"})
            if not status.get("ok"):
                raise ProbeError("status request failed: %s" % status.get("error"))
            if expected_node_id and status.get("node_id") != expected_node_id:
                raise ProbeError("reports node_id %s, expected %s (wrong identity)"
                                 % (status.get("node_id"), expected_node_id))
            echo = _request(fh, sock, {"op": "call", "skill": "echo", "input": {"text": token}})
            if not echo.get("ok") or echo.get("output") != {"text": token}:
                raise ProbeError("echo skill did not answer its input: %s" % (echo.get("error") or echo.get("output")))
    return status


def wait_until_alive(ip, port, expected_node_id=None, timeout=60.0, interval=0.05, still_running=None):
    """Poll until the node answers status and echo, or ``timeout`` seconds pass.

    ``still_running`` (optional callable) is asked about once a second; when it returns a
    string the wait stops early with that reason (e.g. the container exited).
    Returns (status_dict, seconds_waited); raises ProbeError naming what did not answer.
    """
    start = time.monotonic()
    deadline = start + timeout
    last_error = "no attempt made"
    next_check = start + 1.0
    while True:
        try:
            return probe_once(ip, port, expected_node_id, timeout=min(2.0, max(0.2, deadline - time.monotonic()))), \
                time.monotonic() - start
        except ProbeError as exc:
            if "wrong identity" in str(exc):
                raise
            last_error = str(exc)
        except (OSError, ValueError) as exc:
            last_error = exc.strerror if getattr(exc, "strerror", None) else str(exc)
        now = time.monotonic()
        if still_running is not None and now >= next_check:
            next_check = now + 1.0
            reason = still_running()
            if reason:
                raise ProbeError("%s (last probe: %s)" % (reason, last_error))
        if now >= deadline:
            raise ProbeError("did not answer on %s:%d within %ss (last error: %s)" % (ip, port, timeout, last_error))
        time.sleep(interval)
