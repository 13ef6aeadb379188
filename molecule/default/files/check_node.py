"""Look at one knarr node from outside, independently of the collection's code.

Reads the registry row with sqlite3, the container with `docker inspect`, copies node.db out with
`docker cp` and derives the node id itself, then talks to the node in knarr v0.57's protocol with a
client of its own (below, not the collection's): TLS, a signed HEARTBEAT, a signed echo call.  Prints JSON.
usage: check_node.py REGISTRY LABEL NETWORK PORT
"""
import hashlib
import json
import os
import socket
import sqlite3
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import uuid

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

UNSIGNED = {"hops", "ephemeral", "load", "sidecar_port", "version", "min_protocol_version", "mode", "peer_count",
            "batch_seq", "encryption_key", "receipt", "provider_host", "provider_port", "wallet", "has_wallet",
            "jurisdiction"}
KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
ME = hashlib.sha256(bytes.fromhex(PUB)).hexdigest()


def canonical(msg):
    return json.dumps(dict({k: v for k, v in msg.items() if k not in UNSIGNED}, signature=""), sort_keys=True,
                      separators=(",", ":")).encode()


def exchange(sock, msg):
    msg = dict(msg, msg_id=str(uuid.uuid4()), public_key=PUB, signature="")
    msg["signature"] = KEY.sign(canonical(msg)).hex()
    body = json.dumps(msg).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("node closed the connection without answering %s" % msg["type"])
        data += chunk
    reply = json.loads(data[4:4 + struct.unpack(">I", data[:4])[0]])
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(reply["public_key"])).verify(
        bytes.fromhex(reply["signature"]), canonical(reply))  # raises on a bad signature
    return reply


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
out["user"] = info["Config"]["User"]
out["cap_drop"] = info["HostConfig"]["CapDrop"] or []
out["cap_add"] = info["HostConfig"]["CapAdd"] or []
out["privileged"] = info["HostConfig"]["Privileged"]
out["security_opt"] = info["HostConfig"]["SecurityOpt"] or []
out["log_config"] = info["HostConfig"]["LogConfig"]

# From inside: what the node's process (PID 1) really holds.
status = subprocess.run(["docker", "exec", name, "cat", "/proc/1/status"], check=True, capture_output=True,
                        text=True).stdout
fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
out["proc_uid"] = fields["Uid"].split()
out["proc_caps"] = {k: int(fields[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
out["proc_no_new_privs"] = fields.get("NoNewPrivs")

with tempfile.TemporaryDirectory() as tmp:
    subprocess.run(["docker", "cp", name + ":/opt/knarr/node.db", tmp], check=True, capture_output=True)
    seed = sqlite3.connect(os.path.join(tmp, "node.db")).execute("SELECT key_bytes FROM node_identity").fetchall()
    assert len(seed) == 1 and len(seed[0][0]) == 32, "node.db does not hold one 32-byte seed"
    public = Ed25519PrivateKey.from_private_bytes(seed[0][0]).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    out["injected_node_id"] = hashlib.sha256(public).hexdigest()

token = "verify-" + os.urandom(4).hex()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
with ctx.wrap_socket(socket.create_connection((out["ip"], port), timeout=5)) as sock:
    cert_key = x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)).public_key()
    heartbeat = exchange(sock, {"type": "HEARTBEAT", "node_id": ME, "timestamp": time.time(), "version": "0.57.0",
                                "min_protocol_version": "", "punchhole_epoch": 0})
    host, local_port = sock.getsockname()[:2]
    task = str(uuid.uuid4())
    echo = exchange(sock, {"type": "TASK_REQUEST", "task_id": task, "requester_node_id": ME, "requester_host": host,
                           "requester_port": local_port, "skill_name": "echo", "input_data": {"text": token},
                           "timeout_ms": 5000, "mode": "sync", "target_identity": "", "uri": ""})
out["reported_node_id"] = hashlib.sha256(bytes.fromhex(heartbeat["public_key"])).hexdigest()
out["heartbeat_node_id"] = heartbeat.get("node_id")
out["reported_version"] = heartbeat.get("version")
out["cert_node_id"] = hashlib.sha256(cert_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()
out["echo_ok"] = (echo.get("type") == "TASK_RESULT" and echo.get("task_id") == task and echo.get("status") == "completed"
                  and echo.get("output_data") == {"text": token} and echo.get("public_key") == heartbeat["public_key"])
print(json.dumps(out))
