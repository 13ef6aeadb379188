#!/usr/bin/env python3
"""Look at one knarr node from outside, independently of the collection's code.

Reads the registry row with sqlite3, the container with `docker inspect`, copies node.db out with
`docker cp` and derives the node id itself, then talks to the node over TCP. Prints JSON.
usage: check_node.py REGISTRY LABEL NETWORK PORT
"""
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

registry, label, network, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
name = "fenrir-" + label
out = {"label": label, "container": name}

db = sqlite3.connect("file:%s?mode=ro" % registry, uri=True)
row = db.execute("SELECT ip, status, node_id, container_id FROM nodes WHERE label = ?", (label,)).fetchone()
out["registry"] = dict(zip(("ip", "status", "node_id", "container_id"), row)) if row else None

info = json.loads(subprocess.run(["docker", "inspect", name], check=True, capture_output=True).stdout)[0]
out["container_id"] = info["Id"]
out["running"] = info["State"]["Running"]
out["ip"] = info["NetworkSettings"]["Networks"][network]["IPAddress"]
out["memory"] = info["HostConfig"]["Memory"]
out["pids_limit"] = info["HostConfig"]["PidsLimit"]
out["restart_policy"] = info["HostConfig"]["RestartPolicy"]["Name"]
out["published_ports"] = info["HostConfig"]["PortBindings"] or {}

with tempfile.TemporaryDirectory() as tmp:
    subprocess.run(["docker", "cp", name + ":/opt/knarr/node.db", tmp], check=True, capture_output=True)
    seed = sqlite3.connect(os.path.join(tmp, "node.db")).execute("SELECT key_bytes FROM node_identity").fetchall()
    assert len(seed) == 1 and len(seed[0][0]) == 32, "node.db does not hold one 32-byte seed"
    public = Ed25519PrivateKey.from_private_bytes(seed[0][0]).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    out["injected_node_id"] = hashlib.sha256(public).hexdigest()

token = "verify-" + os.urandom(4).hex()
with socket.create_connection((out["ip"], port), timeout=5) as sock, sock.makefile("rb") as fh:
    sock.sendall(b'{"op": "status"}\n')
    status = json.loads(fh.readline())
    sock.sendall((json.dumps({"op": "call", "skill": "echo", "input": {"text": token}}) + "\n").encode())
    echo = json.loads(fh.readline())
out["reported_node_id"] = status.get("node_id")
out["reported_label"] = status.get("label")
out["echo_ok"] = echo.get("ok") is True and echo.get("output") == {"text": token}
print(json.dumps(out))
