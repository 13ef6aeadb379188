"""knarr_wire (the knarr v0.57 client) and knarr_probe (proof of life) against vectors and a fake peer.

Vectors are computed here, independently of the module: canonical JSON written out by hand, signed with
``cryptography`` directly.  The fake peer runs in-process on real loopback sockets (TLS and plain TCP),
checks what the client sends the way a v0.57 node does -- rebuilding each message from its own field
list before verifying it -- and answers whatever a test tells it to.
"""

import datetime
import hashlib
import json
import socket
import ssl
import struct
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID

from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_probe as kp
from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_wire as kw

# RFC 8032 section 7.1, TEST 1.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUB_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
OTHER_SEED = bytes(range(32))


def nid(seed):
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(pub).hexdigest()


NODE_ID = hashlib.sha256(bytes.fromhex(PUB_HEX)).hexdigest()
PROVISIONER_SEED = bytes(range(100, 132))
PROVISIONER = kw.Identity(PROVISIONER_SEED)  # the controller's identity, as the modules probe with it


# --------------------------------------------------------------------------- vectors

def test_identity_matches_rfc8032_and_never_shows_the_seed():
    ident = kw.Identity(SEED)
    assert ident.public_key_hex == PUB_HEX
    assert ident.node_id == NODE_ID == kw.node_id_from_public_key(PUB_HEX)
    assert SEED.hex() not in repr(ident) and NODE_ID in repr(ident)
    with pytest.raises(ValueError):
        kw.Identity(SEED[:31])


def test_heartbeat_canonical_form_and_signature_match_a_hand_written_vector():
    msg = kw.new_message("HEARTBEAT", msg_id="11111111-2222-4333-8444-555555555555", node_id=NODE_ID,
                         timestamp=1700000000.5, version="0.57.0", min_protocol_version="0.50.0")
    # version and min_protocol_version are excluded from the signature; signature "" is kept; keys sorted.
    expected = ('{"msg_id":"11111111-2222-4333-8444-555555555555","node_id":"%s","public_key":"%s",'
                '"punchhole_epoch":0,"signature":"","timestamp":1700000000.5,"type":"HEARTBEAT"}'
                % (NODE_ID, PUB_HEX)).encode()
    signed = kw.sign(msg, kw.Identity(SEED))
    assert kw.canonical_bytes(signed) == expected
    independent = Ed25519PrivateKey.from_private_bytes(SEED).sign(expected).hex()
    assert signed["signature"] == independent and len(independent) == 128
    assert signed["public_key"] == PUB_HEX and signed["version"] == "0.57.0"
    assert kw.verify(signed) and kw.verify(signed, as_received=False)


def test_task_request_has_the_v057_fields_and_mode_is_not_signed():
    msg = kw.new_message("TASK_REQUEST", msg_id="m-1", task_id="t-1", requester_node_id=NODE_ID,
                         requester_host="10.0.0.1", requester_port=4711, skill_name="echo",
                         input_data={"text": "\u00f8 \U0001F680"})
    assert [k for k in msg if k not in kw.ENVELOPE_FIELDS] == [
        "task_id", "requester_node_id", "requester_host", "requester_port", "skill_name", "input_data",
        "timeout_ms", "mode", "target_identity", "uri"]
    assert msg["mode"] == "sync" and msg["timeout_ms"] == 30000 and msg["target_identity"] == "" == msg["uri"]
    expected = ('{"input_data":{"text":"\\u00f8 \\ud83d\\ude80"},"msg_id":"m-1","public_key":"%s",'
                '"requester_host":"10.0.0.1","requester_node_id":"%s","requester_port":4711,"signature":"",'
                '"skill_name":"echo","target_identity":"","task_id":"t-1","timeout_ms":30000,'
                '"type":"TASK_REQUEST","uri":""}' % (PUB_HEX, NODE_ID)).encode()
    signed = kw.sign(msg, kw.Identity(SEED))
    assert kw.canonical_bytes(signed) == expected
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(PUB_HEX)).verify(bytes.fromhex(signed["signature"]), expected)
    # mode is excluded: changing it in transit does not break the signature, changing uri does.
    assert kw.verify(dict(signed, mode="async"))
    assert not kw.verify(dict(signed, uri="knarr:///s/echo"))


def test_task_result_receipt_is_not_signed_and_frames_are_ascii_json():
    msg = kw.sign(kw.new_message("TASK_RESULT", msg_id="r", task_id="t", status="completed",
                                 output_data={"text": "\u00e6"}, receipt="{}"), kw.Identity(SEED))
    assert kw.verify(dict(msg, receipt="anything"))
    assert not kw.verify(dict(msg, status="failed"))
    frame = kw.encode_frame(msg)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert frame[4:] == json.dumps(msg).encode() and b"\\u00e6" in frame


def test_a_sender_missing_v057_fields_fails_verification_the_way_a_v057_node_rebuilds_it():
    ident = kw.Identity(SEED)
    old = {"type": "HEARTBEAT", "msg_id": "x", "public_key": ident.public_key_hex, "signature": "",
           "node_id": ident.node_id, "timestamp": 1.0, "version": "0.54.0", "min_protocol_version": ""}
    old["signature"] = ident.sign(kw.canonical_bytes(old)).hex()  # signed without punchhole_epoch
    assert kw.verify(old)  # as it arrived, the signature is fine ...
    assert not kw.verify(old, as_received=False)  # ... but a v0.57 node adds punchhole_epoch=0 and drops it
    assert kw.rebuild(dict(old, extra="dropped"))["punchhole_epoch"] == 0
    assert "extra" not in kw.rebuild(dict(old, extra="dropped"))
    with pytest.raises(ValueError):
        kw.new_message("HEARTBEAT", wallet="x")
    with pytest.raises(ValueError):
        kw.new_message("NO_SUCH_TYPE")


def test_verify_refuses_unsigned_garbled_and_foreign_signatures():
    msg = kw.sign(kw.new_message("HEARTBEAT", node_id=NODE_ID), kw.Identity(SEED))
    assert not kw.verify(dict(msg, signature=""))
    assert not kw.verify(dict(msg, signature="zz"))
    assert not kw.verify(dict(msg, public_key=kw.Identity(OTHER_SEED).public_key_hex))
    assert not kw.verify(dict(msg, timestamp=2.0))


# --------------------------------------------------------------------------- framing

def _pair():
    a, b = socket.socketpair()
    a.settimeout(2)
    b.settimeout(2)
    return a, b


def test_read_frame_reads_exactly_across_partial_sends():
    a, b = _pair()
    frame = kw.encode_frame({"type": "ACK", "status": "ok"})
    for i in range(0, len(frame), 3):
        b.sendall(frame[i:i + 3])
    b.sendall(kw.encode_frame({"second": True}))
    assert kw.read_frame(a) == {"type": "ACK", "status": "ok"}
    assert kw.read_frame(a) == {"second": True}
    a.close(), b.close()


def test_read_frame_enforces_the_cap_before_reading_the_body():
    a, b = _pair()
    b.sendall(struct.pack(">I", kw.MAX_MESSAGE_SIZE + 1))  # no body follows: it must not wait for one
    with pytest.raises(kw.FrameTooLarge):
        kw.read_frame(a, time.monotonic() + 1)
    b.sendall(struct.pack(">I", kw.MAX_MESSAGE_SIZE))
    b.sendall(b"x" * 10)
    b.close()
    with pytest.raises(kw.ConnectionClosed):
        kw.read_frame(a, time.monotonic() + 1)
    a.close()
    with pytest.raises(kw.FrameTooLarge):
        kw.encode_frame({"text": "x" * kw.MAX_MESSAGE_SIZE})


def test_read_frame_refuses_non_json_and_closed_connections():
    a, b = _pair()
    b.sendall(struct.pack(">I", 3) + b"abc")
    with pytest.raises(kw.WireError):
        kw.read_frame(a)
    b.close()
    with pytest.raises(kw.ConnectionClosed):
        kw.read_frame(a)
    a.close()


# --------------------------------------------------------------------------- the fake peer

EXCLUDED = {"hops", "ephemeral", "load", "sidecar_port", "version", "min_protocol_version", "mode", "peer_count",
            "batch_seq", "encryption_key", "receipt", "provider_host", "provider_port", "wallet", "has_wallet",
            "jurisdiction"}
# v0.57's lists, written out again here: what the peer rebuilds incoming messages from.
PEER_FIELDS = {
    "HEARTBEAT": {"node_id": "", "timestamp": 0.0, "version": "", "min_protocol_version": "", "punchhole_epoch": 0},
    "TASK_REQUEST": {"task_id": "", "requester_node_id": "", "requester_host": "", "requester_port": 0,
                     "skill_name": "", "input_data": {}, "timeout_ms": 30000, "mode": "sync",
                     "target_identity": "", "uri": ""},
}


def _canon(d):
    d = {k: v for k, v in d.items() if k not in EXCLUDED}
    d["signature"] = ""
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


def peer_sign(seed, msg):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    msg = dict(msg, public_key=key.public_key().public_bytes(serialization.Encoding.Raw,
                                                             serialization.PublicFormat.Raw).hex(), signature="")
    msg["signature"] = key.sign(_canon(msg)).hex()
    return msg


def peer_verify(raw):
    """What a v0.57 node does with an incoming message: rebuild from its field list, then verify."""
    fields = PEER_FIELDS[raw["type"]]
    msg = {k: raw.get(k, "") for k in ("type", "msg_id", "public_key", "signature")}
    msg.update({k: raw.get(k, d) for k, d in fields.items()})
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(msg["public_key"])).verify(
        bytes.fromhex(msg["signature"]), _canon(msg))
    if msg.get("node_id"):
        assert msg["node_id"] == hashlib.sha256(bytes.fromhex(msg["public_key"])).hexdigest()
    return msg


def heartbeat_reply(seed=SEED, **kw_):
    return peer_sign(seed, dict(dict(type="HEARTBEAT", msg_id="hb", node_id=nid(seed), timestamp=time.time(),
                                     version="0.57.0", min_protocol_version="", punchhole_epoch=0), **kw_))


def echo_reply(request, seed=SEED, **kw_):
    base = dict(type="TASK_RESULT", msg_id="tr", task_id=request["task_id"], status="completed",
                output_data={"text": request["input_data"].get("text")}, error={}, receipt="")
    base.update(kw_)
    return peer_sign(seed, base)


def error_reply(request, code, message="refused", seed=SEED):
    return echo_reply(request, seed=seed, status="failed", output_data={}, error={"code": code, "message": message})


def write_cert(tmp_path, seed=None, ecdsa=False, name="peer"):
    if ecdsa:
        key = ec.generate_private_key(ec.SECP256R1())
        algorithm = hashes.SHA256()
    else:
        key = Ed25519PrivateKey.from_private_bytes(seed)
        algorithm = None
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-peer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, algorithm))
    cert_path, key_path = tmp_path / ("%s-cert.pem" % name), tmp_path / ("%s-key.pem" % name)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class FakePeer(object):
    """A knarr-ish node on loopback; ``respond(msg) -> reply dict | None (close)`` decides each answer."""

    def __init__(self, respond, tls_files=None):
        self.respond = respond
        self.received = []
        self.errors = []
        self.ctx = None
        if tls_files:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*tls_files)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.settimeout(5)
            if self.ctx is not None:
                conn = self.ctx.wrap_socket(conn, server_side=True)
            while True:
                header = b""
                while len(header) < 4:
                    chunk = conn.recv(4 - len(header))
                    if not chunk:
                        return
                    header += chunk
                (length,) = struct.unpack(">I", header)
                if length > kw.MAX_MESSAGE_SIZE:  # a TLS ClientHello reads as ~370 MB: knarr closes
                    return
                body = b""
                while len(body) < length:
                    chunk = conn.recv(length - len(body))
                    if not chunk:
                        return
                    body += chunk
                raw = json.loads(body)
                msg = peer_verify(raw)  # raises (and so closes) on anything a v0.57 node would drop
                self.received.append(msg)
                reply = self.respond(msg)
                if reply is None:
                    return
                data = json.dumps(reply).encode()
                conn.sendall(struct.pack(">I", len(data)) + data)
        except Exception as exc:  # noqa: BLE001 -- recorded for the test, then the connection closes
            self.errors.append(exc)
        finally:
            conn.close()

    def close(self):
        self.stopping = True
        self.sock.close()


def honest(msg):
    return heartbeat_reply() if msg["type"] == "HEARTBEAT" else echo_reply(msg)


@pytest.fixture(params=["tls", "plain"])
def mode(request):
    return request.param


@pytest.fixture
def make_peer(tmp_path, mode):
    peers = []

    def make(respond, cert_seed=SEED, ecdsa=False):
        files = write_cert(tmp_path, cert_seed, ecdsa, name=str(len(peers))) if mode == "tls" else None
        peer = FakePeer(respond, files)
        peers.append(peer)
        return peer
    yield make
    for p in peers:
        p.close()


def probe(peer, mode, expected=NODE_ID, **kwargs):
    kwargs.setdefault("identity", PROVISIONER)
    return kp.probe_once("127.0.0.1", peer.port, expected, timeout=2.0, tls=(mode == "tls"), **kwargs)


def test_probe_accepts_an_honest_node_and_sends_what_v057_verifies(make_peer, mode):
    peer = make_peer(honest)
    status = probe(peer, mode, identity=OTHER_SEED)
    assert status["node_id"] == NODE_ID and status["public_key"] == PUB_HEX and status["version"] == "0.57.0"
    assert status["tls"] is (mode == "tls")
    assert status["cert_node_id"] == (NODE_ID if mode == "tls" else None)
    hb, req = peer.received
    assert peer.errors == []
    assert hb["type"] == "HEARTBEAT" and hb["node_id"] == nid(OTHER_SEED) and hb["punchhole_epoch"] == 0
    assert req["type"] == "TASK_REQUEST" and req["skill_name"] == "echo" and req["mode"] == "sync"
    assert req["requester_node_id"] == nid(OTHER_SEED) and req["requester_host"] and 0 < req["requester_port"] < 65536
    assert req["input_data"]["text"].startswith("fenrir-proof-of-life-") and hb["msg_id"] != req["msg_id"]


def test_two_probes_never_repeat_a_msg_id_or_text(make_peer, mode):
    peer = make_peer(honest)
    probe(peer, mode)
    probe(peer, mode)
    reqs = [m for m in peer.received if m["type"] == "TASK_REQUEST"]
    assert len({m["msg_id"] for m in peer.received}) == 4
    assert reqs[0]["input_data"] != reqs[1]["input_data"]


def test_other_identity_is_refused_naming_the_node_it_showed(make_peer, mode):
    peer = make_peer(lambda m: heartbeat_reply(OTHER_SEED) if m["type"] == "HEARTBEAT" else echo_reply(m, OTHER_SEED),
                     cert_seed=OTHER_SEED)
    with pytest.raises(kp.WrongIdentity, match="wrong identity: node %s answered, expected %s" % (nid(OTHER_SEED),
                                                                                                  NODE_ID)):
        probe(peer, mode)


def test_heartbeat_claiming_another_node_id_is_wrong_identity(make_peer, mode):
    peer = make_peer(lambda m: heartbeat_reply(node_id="ab" * 32) if m["type"] == "HEARTBEAT" else echo_reply(m))
    with pytest.raises(kp.WrongIdentity, match="claims node_id abab"):
        probe(peer, mode, expected=None)


@pytest.mark.parametrize("tamper, fragment", [
    (lambda r: dict(r, signature=""), "unsigned HEARTBEAT"),
    (lambda r: {k: v for k, v in r.items() if k not in ("signature", "public_key")}, "unsigned HEARTBEAT"),
    (lambda r: dict(r, timestamp=r["timestamp"] + 1), "signature does not verify"),
    (lambda r: dict(r, signature="00" * 64), "signature does not verify"),
])
def test_unsigned_or_badly_signed_heartbeats_are_refused(make_peer, mode, tamper, fragment):
    peer = make_peer(lambda m: tamper(heartbeat_reply()) if m["type"] == "HEARTBEAT" else echo_reply(m))
    with pytest.raises(kp.ProbeError, match=fragment) as info:
        probe(peer, mode)
    assert not isinstance(info.value, kp.WrongIdentity)


def test_tls_certificate_keyed_by_another_identity_is_refused(make_peer, mode):
    if mode != "tls":
        pytest.skip("only TLS has a certificate")
    peer = make_peer(honest, cert_seed=OTHER_SEED)
    with pytest.raises(kp.WrongIdentity, match="TLS certificate belongs to node %s" % nid(OTHER_SEED)):
        probe(peer, mode)


def test_tls_certificate_without_an_ed25519_key_is_refused(make_peer, mode):
    if mode != "tls":
        pytest.skip("only TLS has a certificate")
    peer = make_peer(honest, ecdsa=True)
    with pytest.raises(kp.WrongIdentity, match="no Ed25519 key"):
        probe(peer, mode)


@pytest.mark.parametrize("reply, fragment", [
    (lambda m: echo_reply(m, output_data={"text": "something else"}), "echo skill answered 'something else'"),
    (lambda m: echo_reply(m, output_data={}), "echo skill answered {}"),
    (lambda m: echo_reply(m, task_id="not-ours"), "for task 'not-ours'"),
    (lambda m: dict(echo_reply(m), signature=""), "unsigned TASK_RESULT"),
    (lambda m: dict(echo_reply(m), output_data={"text": "forged"}), "signature does not verify"),
    (lambda m: peer_sign(SEED, dict(type="TASK_STATUS", msg_id="s", task_id=m["task_id"], status="queued",
                                    reason="", position=3)), "TASK_STATUS queued"),
    (lambda m: None, "closed the connection without answering the echo call"),
])
def test_wrong_echo_answers_are_refused(make_peer, mode, reply, fragment):
    peer = make_peer(lambda m: heartbeat_reply() if m["type"] == "HEARTBEAT" else reply(m))
    with pytest.raises(kp.ProbeError, match=fragment):
        probe(peer, mode)


def test_echo_signed_by_another_key_is_wrong_identity(make_peer, mode):
    peer = make_peer(lambda m: heartbeat_reply() if m["type"] == "HEARTBEAT" else echo_reply(m, OTHER_SEED))
    with pytest.raises(kp.WrongIdentity, match="echo result is signed by node %s" % nid(OTHER_SEED)):
        probe(peer, mode)


@pytest.mark.parametrize("code", ["UNKNOWN_SKILL", "ACCESS_DENIED", "ADMISSION_BLOCKED", "INVALID_INPUT",
                                  "INVALID_REQUEST", "DUPLICATE_REQUEST", "URI_MISMATCH", "RETRY_AFTER",
                                  "PROVIDER_BUSY", "TIMEOUT", "HANDLER_ERROR", "SOMETHING_NEW"])
def test_each_error_code_is_named(make_peer, mode, code):
    peer = make_peer(lambda m: heartbeat_reply() if m["type"] == "HEARTBEAT" else error_reply(m, code, "why"))
    with pytest.raises(kp.ProbeError, match="echo call failed: %s: why" % code) as info:
        probe(peer, mode)
    assert not isinstance(info.value, kp.WrongIdentity)
    if code in kw.ERROR_CODES:
        assert kw.ERROR_CODES[code] in str(info.value)


def test_a_node_that_drops_the_heartbeat_is_reported(make_peer, mode):
    peer = make_peer(lambda m: None)
    with pytest.raises(kp.ProbeError, match="closed the connection without answering the HEARTBEAT"):
        probe(peer, mode)


def test_tls_probe_of_a_plain_node_says_so(tmp_path):
    peer = FakePeer(honest)  # plain TCP
    try:
        with pytest.raises(kp.ProbeError, match="TLS handshake failed.*plain TCP"):
            kp.probe_once("127.0.0.1", peer.port, NODE_ID, timeout=2.0, tls=True, identity=PROVISIONER)
    finally:
        peer.close()


def test_wrong_identity_stops_the_wait_at_once(make_peer, mode):
    peer = make_peer(lambda m: heartbeat_reply(OTHER_SEED), cert_seed=OTHER_SEED)
    t0 = time.monotonic()
    with pytest.raises(kp.WrongIdentity, match=nid(OTHER_SEED)):
        kp.wait_until_alive("127.0.0.1", peer.port, NODE_ID, timeout=20, tls=(mode == "tls"), identity=PROVISIONER)
    assert time.monotonic() - t0 < 2.0


def test_wait_retries_error_codes_until_the_skill_is_there(make_peer, mode):
    calls = []

    def loading(m):
        if m["type"] == "HEARTBEAT":
            return heartbeat_reply()
        calls.append(m)
        return error_reply(m, "UNKNOWN_SKILL") if len(calls) < 3 else echo_reply(m)
    peer = make_peer(loading)
    status, waited = kp.wait_until_alive("127.0.0.1", peer.port, NODE_ID, timeout=10, interval=0.01,
                                         tls=(mode == "tls"), identity=PROVISIONER)
    assert status["node_id"] == NODE_ID and len(calls) == 3 and waited < 5


def test_wait_gives_up_at_the_deadline_naming_the_last_error(make_peer, mode):
    peer = make_peer(lambda m: heartbeat_reply() if m["type"] == "HEARTBEAT" else error_reply(m, "ACCESS_DENIED"))
    t0 = time.monotonic()
    with pytest.raises(kp.ProbeError, match="within 0.5s .*ACCESS_DENIED"):
        kp.wait_until_alive("127.0.0.1", peer.port, NODE_ID, timeout=0.5, tls=(mode == "tls"), identity=PROVISIONER)
    assert time.monotonic() - t0 < 3.0


def test_wait_on_a_closed_port_is_bounded_and_stops_when_told():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t0 = time.monotonic()
    with pytest.raises(kp.ProbeError, match="container exited.*last probe"):
        kp.wait_until_alive("127.0.0.1", port, NODE_ID, timeout=30, still_running=lambda: "container exited", identity=PROVISIONER)
    assert time.monotonic() - t0 < 3.0


def test_probe_messages_carry_no_seed(make_peer, mode):
    peer = make_peer(lambda m: heartbeat_reply(OTHER_SEED), cert_seed=OTHER_SEED)
    with pytest.raises(kp.ProbeError) as info:
        probe(peer, mode, identity=SEED)
    assert SEED.hex() not in str(info.value) and OTHER_SEED.hex() not in str(info.value)


def test_probe_signs_with_the_provisioner_identity_it_is_given_and_has_no_default(make_peer, mode):
    peer = make_peer(honest)
    probe(peer, mode)
    hb, req = peer.received
    assert hb["public_key"] == PROVISIONER.public_key_hex and hb["node_id"] == PROVISIONER.node_id
    assert req["public_key"] == PROVISIONER.public_key_hex and req["requester_node_id"] == PROVISIONER.node_id
    probe(peer, mode, identity=PROVISIONER_SEED)  # a seed is as good as an Identity
    assert peer.received[-1]["public_key"] == PROVISIONER.public_key_hex
    with pytest.raises(TypeError):
        kp.probe_once("127.0.0.1", peer.port, NODE_ID, timeout=2.0, tls=(mode == "tls"))  # pylint: disable=missing-kwoa
    with pytest.raises(ValueError, match="provisioner's identity"):
        kp.probe_once("127.0.0.1", peer.port, NODE_ID, timeout=2.0, tls=(mode == "tls"), identity=None)
