"""The knarr v0.57 stand-in (images/knarr-cluster-node/knarr_standin.py), talked to with knarr_wire.

The stand-in runs as a real subprocess on the host Python (no Docker), bound to free loopback ports in a
temporary config directory.  Everything it is asked goes over its node port in knarr's own protocol --
the collection's client on one side, the stand-in's independent implementation on the other.
"""

import hashlib
import json
import os
import signal
import socket
import sqlite3
import ssl
import stat
import struct
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_probe as kp
from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_wire as kw

REPO_ROOT = Path(__file__).resolve().parents[3]
STANDIN = REPO_ROOT / "images" / "knarr-cluster-node" / "knarr_standin.py"

# RFC 8032 section 7.1, TEST 1: secret key (seed) and its public key.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBKEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
CALLER_SEED = bytes(range(32))
TOKEN = "cockpit-test-token"

HANDLERS = {
    "echo.py": "async def handle(input_data):\n    return {\"text\": input_data[\"text\"]}\n",
    "ctx.py": "async def handle(input_data, ctx):\n    return {\"ctx\": ctx, \"got\": input_data[\"k\"]}\n",
    "boom.py": "async def handle(input_data):\n    raise RuntimeError(\"kaboom\")\n",
    "slow.py": "import time\ndef handle(input_data):\n    time.sleep(2)\n    return {}\n",
}


def expected_node_id(seed=SEED):
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(pub).hexdigest()


NODE_ID = expected_node_id()
CALLER_ID = expected_node_id(CALLER_SEED)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_identity(db_path, rows=(SEED,), create_table=True):
    conn = sqlite3.connect(db_path)
    try:
        if create_table:
            conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
            conn.executemany("INSERT INTO node_identity (key_bytes) VALUES (?)", [(r,) for r in rows])
        else:
            conn.execute("CREATE TABLE something_else (x INTEGER)")
        conn.commit()
    finally:
        conn.close()


def stored_seeds(db_path):
    conn = sqlite3.connect(db_path)
    try:
        return [r[0] for r in conn.execute("SELECT key_bytes FROM node_identity")]
    finally:
        conn.close()


class NodeDir:
    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.cockpit_port = free_port()
        while self.cockpit_port == self.port:
            self.cockpit_port = free_port()
        self.config = root / "knarr.toml"
        self.db = root / "node.db"
        (root / "skills").mkdir()
        for name, source in HANDLERS.items():
            (root / "skills" / name).write_text(source)
        self.node = {}
        self.cockpit = {"tls": "off", "auth_token": TOKEN}
        self.extra = ""
        write_identity(self.db)

    def write_config(self, extra=None):
        node = dict(host="127.0.0.1", port=self.port, advertise_host="198.51.100.7", storage="node.db")
        node.update(self.node)
        cockpit = dict(port=self.cockpit_port, bind="127.0.0.1")
        cockpit.update(self.cockpit)

        def table(name, values):
            return "[%s]\n" % name + "".join("%s = %s\n" % (k, json.dumps(v)) for k, v in values.items())
        text = table("node", node) + "\n" + table("cockpit", cockpit) + textwrap.dedent("""
            [policy]
            initial_credit = 3.0
            min_balance = -10.0

            [fenrir]
            label = "test-node"
            location = "lab"

            [skills.echo]
            handler = "skills/echo.py:handle"
            description = "Echo the text back"
            tags = ["util", "test"]
            price = 0
            input_schema = { text = "string" }

            [skills.priced]
            handler = "skills/echo.py:handle"
            price = 5.0

            [skills.secret]
            handler = "skills/echo.py:handle"
            price = 0
            visibility = "private"

            [skills.listed]
            handler = "skills/echo.py:handle"
            price = 0
            visibility = "whitelist"
            allowed_nodes = ["%s"]

            [skills.ctx]
            handler = "skills/ctx.py:handle"
            price = 0

            [skills.boom]
            handler = "skills/boom.py:handle"
            price = 0

            [skills.slow]
            handler = "skills/slow.py:handle"
            price = 0
            """ % CALLER_ID) + self.extra + (extra or "")
        self.config.write_text(text)

    def run(self, *args, timeout=20):
        return subprocess.run([sys.executable, str(STANDIN), *args, "--config", str(self.config)],
                              capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False)


class Running:
    """A started ``knarr serve``, stdout/stderr captured to files."""

    def __init__(self, nd: NodeDir):
        nd.write_config() if not nd.config.exists() else None
        self.nd = nd
        self.out_path, self.err_path = nd.root / "serve.stdout", nd.root / "serve.stderr"
        self._out, self._err = open(self.out_path, "w"), open(self.err_path, "w")
        self.proc = subprocess.Popen([sys.executable, str(STANDIN), "serve", "--config", str(nd.config)],
                                     stdout=self._out, stderr=self._err, cwd=nd.root)
        deadline = time.monotonic() + 20
        while "Node ID:" not in self.stdout or not self._listening():
            if self.proc.poll() is not None:
                raise AssertionError("stand-in exited early with %s: %s" % (self.proc.returncode, self.stderr))
            if time.monotonic() > deadline:
                raise AssertionError("stand-in did not start within 20 s: %s" % self.stderr)
            time.sleep(0.05)

    def _listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.nd.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    @property
    def stdout(self):
        return self.out_path.read_text()

    @property
    def stderr(self):
        return self.err_path.read_text()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._out.close()
        self._err.close()


@pytest.fixture
def node_dir(tmp_path):
    nd = NodeDir(tmp_path)
    nd.write_config()
    return nd


@pytest.fixture
def node(node_dir):
    r = Running(node_dir)
    yield r
    r.stop()


@pytest.fixture
def conn(node):
    c = kw.connect("127.0.0.1", node.nd.port, identity=CALLER_SEED, timeout=5)
    yield c
    c.close()


def call(conn, skill, data, **kw_):
    reply = conn.call_skill(skill, data, **kw_)
    assert kw.verify(reply) and kw.verify(reply, as_received=False), reply
    assert kw.signer_node_id(reply) == NODE_ID
    assert reply["type"] == "TASK_RESULT" and reply["task_id"] == conn.last_sent["task_id"]
    return reply


def error_code(reply):
    assert reply["status"] == "failed", reply
    return reply["error"]["code"]


def assert_dropped(c):
    """A knarr node closes, without a word, on what it cannot verify."""
    with pytest.raises(kw.ConnectionClosed):
        c.receive(timeout=3)


def http_get(port, path, token=None, tls=False):
    req = urllib.request.Request("%s://127.0.0.1:%d%s" % ("https" if tls else "http", port, path))
    if token is not None:
        req.add_header("Authorization", "Bearer %s" % token)
    ctx = ssl._create_unverified_context() if tls else None
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --------------------------------------------------------------------------- identity and start-up

def test_expected_node_id_matches_rfc8032_vector():
    assert NODE_ID == hashlib.sha256(RFC_PUBKEY).hexdigest()


def test_prints_node_id_and_listening_like_knarr_and_never_the_seed(node):
    assert "Node ID: %s\n" % NODE_ID in node.stdout
    assert "Listening: 127.0.0.1:%d\n" % node.nd.port in node.stdout
    assert "Loaded persistent node identity" in node.stderr
    combined = node.stdout + node.stderr
    assert SEED.hex() not in combined and TOKEN not in combined


def test_heartbeat_is_answered_signed_by_the_node(conn):
    reply = conn.heartbeat()
    assert reply["type"] == "HEARTBEAT" and reply["node_id"] == NODE_ID
    assert reply["public_key"] == RFC_PUBKEY.hex() and reply["version"] == "0.57.0"
    assert reply["punchhole_epoch"] == 0 and "min_protocol_version" in reply
    assert kw.verify(reply) and kw.verify(reply, as_received=False)


def test_collection_probe_proves_the_node_over_tls(node):
    status = kp.probe_once("127.0.0.1", node.nd.port, NODE_ID, timeout=3, identity=CALLER_SEED)
    assert status["node_id"] == NODE_ID and status["cert_node_id"] == NODE_ID and status["tls"] is True
    with pytest.raises(kp.WrongIdentity, match="node %s answered" % NODE_ID):
        kp.probe_once("127.0.0.1", node.nd.port, CALLER_ID, timeout=3, identity=CALLER_SEED)


def test_tls_certificate_is_keyed_by_the_seed_and_written_like_knarr(node):
    cert = x509.load_pem_x509_certificate((node.nd.root / "cert.pem").read_bytes())
    key = cert.public_key()
    assert isinstance(key, Ed25519PublicKey) and key.public_bytes(Encoding.Raw, PublicFormat.Raw) == RFC_PUBKEY
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NODE_ID[:16]
    assert stat.S_IMODE((node.nd.root / "key.pem").stat().st_mode) == 0o600
    with kw.connect("127.0.0.1", node.nd.port, timeout=5) as c:
        assert c.peer_key == RFC_PUBKEY and c.peer_key_type == "Ed25519"


def test_plain_tcp_when_tls_is_off(node_dir):
    node_dir.node["tls"] = False
    node_dir.write_config()
    r = Running(node_dir)
    try:
        assert kp.probe_once("127.0.0.1", node_dir.port, NODE_ID, timeout=3, tls=False, identity=CALLER_SEED)["cert_node_id"] is None
        with pytest.raises(kp.ProbeError, match="TLS handshake failed"):
            kp.probe_once("127.0.0.1", node_dir.port, NODE_ID, timeout=3, tls=True, identity=CALLER_SEED)
        assert not (node_dir.root / "cert.pem").exists()
    finally:
        r.stop()


def test_tls_required_without_a_certificate_refuses_to_start(node_dir):
    node_dir.extra = '\n[network]\ntls_cert = "missing-cert.pem"\ntls_key = "missing-key.pem"\n'
    node_dir.write_config()
    res = node_dir.run("serve")
    assert res.returncode == 6, res.stderr
    assert "TLS is required" in res.stderr
    node_dir.node["tls_required"] = False
    node_dir.write_config()
    r = Running(node_dir)
    try:
        assert "serving plain TCP" in r.stderr
        kp.probe_once("127.0.0.1", node_dir.port, NODE_ID, timeout=3, tls=False, identity=CALLER_SEED)
    finally:
        r.stop()


def _missing(db):
    db.unlink()


def _empty_table(db):
    db.unlink()
    write_identity(db, rows=())


def _no_table(db):
    db.unlink()
    write_identity(db, create_table=False)


@pytest.mark.parametrize("breakage", [_missing, _empty_table, _no_table], ids=lambda f: f.__name__.strip("_"))
def test_no_identity_is_generated_and_stored_like_knarr(node_dir, breakage):
    breakage(node_dir.db)
    r = Running(node_dir)
    try:
        seeds = stored_seeds(node_dir.db)
        assert len(seeds) == 1 and len(seeds[0]) == 32 and seeds[0] != SEED
        assert "Node ID: %s" % expected_node_id(seeds[0]) in r.stdout
        assert "Generated new persistent node identity" in r.stderr
        assert seeds[0].hex() not in r.stdout + r.stderr
    finally:
        r.stop()


def _not_sqlite(db):
    db.write_bytes(b"this is definitely not an SQLite database\n" * 50)


def _short_key(db):
    db.unlink()
    write_identity(db, rows=(SEED[:31],))


def _long_key(db):
    db.unlink()
    write_identity(db, rows=(SEED + b"\x00",))


def _two_rows(db):
    db.unlink()
    write_identity(db, rows=(SEED, bytes(32)))


def _hex_text_key(db):
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
    conn.execute("INSERT INTO node_identity VALUES (?)", (SEED.hex(),))
    conn.commit()
    conn.close()


@pytest.mark.parametrize("breakage, reason", [
    (_not_sqlite, "not an SQLite database"),
    (_short_key, "31 bytes"),
    (_long_key, "33 bytes"),
    (_two_rows, "more than one row"),
    (_hex_text_key, "not a 32-byte blob"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_refuses_to_start_on_a_bad_identity(node_dir, breakage, reason):
    breakage(node_dir.db)
    res = node_dir.run("serve")
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr)
    assert "knarr: refusing to start:" in res.stderr and reason in res.stderr
    combined = (res.stdout + res.stderr).lower()
    for secret in (SEED.hex(), SEED[:31].hex(), SEED[:16].hex()):
        assert secret not in combined
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", node_dir.port), timeout=0.5).close()


def test_identity_database_is_only_read(node_dir):
    before, mtime = node_dir.db.read_bytes(), node_dir.db.stat().st_mtime_ns
    r = Running(node_dir)
    r.proc.send_signal(signal.SIGTERM)
    r.proc.wait(5)
    r.stop()
    assert node_dir.db.read_bytes() == before and node_dir.db.stat().st_mtime_ns == mtime


def test_wal_mode_database_is_read(node_dir):
    node_dir.db.unlink()
    conn = sqlite3.connect(node_dir.db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
    conn.execute("INSERT INTO node_identity VALUES (?)", (SEED,))
    conn.commit()
    conn.close()
    r = Running(node_dir)
    try:
        assert "Node ID: %s" % NODE_ID in r.stdout
    finally:
        r.stop()


def test_invalid_toml_refuses_to_start(node_dir):
    node_dir.config.write_text("[node\nport = 1\n")
    res = node_dir.run("serve")
    assert res.returncode == 2 and "not valid TOML" in res.stderr


def test_unknown_sections_and_keys_warn_but_start(node_dir):
    node_dir.node["turbo"] = True
    node_dir.write_config("\n[mystery]\nvalue = 1\n")
    r = Running(node_dir)
    try:
        assert "[mystery]" in r.stderr and "'turbo' in [node]" in r.stderr
    finally:
        r.stop()


@pytest.mark.parametrize("skill_toml, skill_py", [
    ('handler = "skills/broken.py:handle"', "def handle(:\n"),
    ('handler = "skills/broken.py:handle"', "raise ImportError('no deps')\n"),
    ('handler = "skills/broken.py:nothere"', "async def handle(d):\n    return d\n"),
    ('handler = "skills/missing.py:handle"', None),
    ('handler = "../outside.py:handle"', None),
    ('handler = "skills/echo.py:handle"\nvisibility = "secretive"', None),
])
def test_skill_that_fails_to_load_exits_4(node_dir, skill_toml, skill_py):
    if skill_py is not None:
        (node_dir.root / "skills" / "broken.py").write_text(skill_py)
    node_dir.write_config("\n[skills.brokenskill]\n%s\n" % skill_toml)
    res = node_dir.run("serve")
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    assert "brokenskill" in res.stderr and "knarr: refusing to start:" in res.stderr


# --------------------------------------------------------------------------- framing and verification

def test_echo_round_trips_many_requests_on_one_connection(conn):
    for text in ["hello", "", "\u00fcn\u00efc\u00f8d\u00e9 \u2713", "x" * 10000]:
        reply = call(conn, "echo", {"text": text})
        assert reply["status"] == "completed" and reply["output_data"] == {"text": text}
        receipt = json.loads(reply["receipt"])
        assert receipt["data"]["provider_node_id"] == NODE_ID and receipt["data"]["consumer_node_id"] == CALLER_ID


def test_replayed_msg_id_is_a_duplicate_request(conn):
    call(conn, "echo", {"text": "once"})
    conn.sock.sendall(kw.encode_frame(conn.last_sent))  # the same signed message again
    reply = conn.receive()
    assert kw.verify(reply) and error_code(reply) == "DUPLICATE_REQUEST"


def test_bad_signature_is_dropped_and_the_node_lives_on(node, conn):
    msg = kw.sign(kw.new_message("HEARTBEAT", node_id=CALLER_ID), kw.Identity(CALLER_SEED))
    conn.sock.sendall(kw.encode_frame(dict(msg, timestamp=123.0)))
    assert_dropped(conn)
    assert "invalid signature" in node.stderr
    kp.probe_once("127.0.0.1", node.nd.port, NODE_ID, timeout=3, identity=CALLER_SEED)


def test_node_id_other_than_the_key_is_dropped(node, conn):
    msg = kw.new_message("HEARTBEAT", node_id=expected_node_id())  # not the caller's own id
    conn.sock.sendall(kw.encode_frame(kw.sign(msg, kw.Identity(CALLER_SEED))))
    assert_dropped(conn)
    assert "mismatched node_id" in node.stderr


@pytest.mark.parametrize("missing", ["punchhole_epoch", "uri", "target_identity"])
def test_a_sender_without_v057_fields_is_dropped(conn, missing):
    ident = kw.Identity(CALLER_SEED)
    if missing == "punchhole_epoch":
        msg = kw.new_message("HEARTBEAT", node_id=ident.node_id, timestamp=time.time())
    else:
        msg = kw.new_message("TASK_REQUEST", task_id="t", requester_node_id=ident.node_id,
                             requester_host="127.0.0.1", requester_port=4000, skill_name="echo",
                             input_data={"text": "x"})
    del msg[missing]
    msg["public_key"] = ident.public_key_hex
    msg["signature"] = ident.sign(kw.canonical_bytes(msg)).hex()
    conn.sock.sendall(kw.encode_frame(msg))
    assert_dropped(conn)


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    struct.pack(">I", kw.MAX_MESSAGE_SIZE + 1) + b"x" * 64,
    struct.pack(">I", 5) + b"[1,2]",
    struct.pack(">I", 9) + b"not json!",
])
def test_garbage_closes_the_connection(node, payload):
    with kw.connect("127.0.0.1", node.nd.port, timeout=5) as c:
        c.sock.sendall(payload)
        assert_dropped(c)


def test_unknown_type_closes_the_connection(conn):
    msg = {"type": "FROBNICATE", "msg_id": "x", "public_key": "", "signature": ""}
    conn.sock.sendall(kw.encode_frame(kw.sign(msg, kw.Identity(CALLER_SEED))))
    assert_dropped(conn)


def test_silence_is_closed_after_two_seconds(node):
    with kw.connect("127.0.0.1", node.nd.port, timeout=5) as c:
        t0 = time.monotonic()
        assert_dropped(c)
        assert 1.5 < time.monotonic() - t0 < 4


# --------------------------------------------------------------------------- task requests

def test_unknown_skill(conn):
    reply = call(conn, "nope", {})
    assert error_code(reply) == "UNKNOWN_SKILL" and "nope" in reply["error"]["message"]


def test_missing_input_schema_key_is_invalid_input(conn):
    reply = call(conn, "echo", {"txt": "typo"})
    assert error_code(reply) == "INVALID_INPUT"
    assert reply["error"]["detail"] == {"missing_fields": ["text"]}


def test_input_over_max_input_size(conn):
    assert error_code(call(conn, "echo", {"text": "y" * 70000})) == "INPUT_TOO_LARGE"


def test_requester_address_must_be_usable(conn):
    ident = kw.Identity(CALLER_SEED)
    for host, port in (("", 4000), ("127.0.0.1", 0), ("127.0.0.1", 70000)):
        msg = kw.new_message("TASK_REQUEST", task_id="t-%s-%s" % (host, port), requester_node_id=ident.node_id,
                             requester_host=host, requester_port=port, skill_name="echo", input_data={"text": "a"})
        reply = conn.request(msg)
        assert kw.verify(reply) and error_code(reply) == "INVALID_REQUEST"


def test_private_skill_is_access_denied(conn):
    assert error_code(call(conn, "secret", {})) == "ACCESS_DENIED"


def test_whitelist_admits_only_its_nodes(node):
    with kw.connect("127.0.0.1", node.nd.port, identity=CALLER_SEED) as listed:
        assert call(listed, "listed", {"text": "in"})["status"] == "completed"
    with kw.connect("127.0.0.1", node.nd.port, identity=bytes(32)) as other:
        reply = call(other, "listed", {"text": "out"})
        assert error_code(reply) == "ACCESS_DENIED" and expected_node_id(bytes(32)) in reply["error"]["message"]


def test_credit_runs_out_on_a_priced_skill_but_not_on_a_free_one(conn):
    # initial_credit 3, min_balance -10, price 5: 3 -> -2 -> -7, then -12 < -10 is refused.
    assert call(conn, "priced", {"text": "1"})["status"] == "completed"
    assert call(conn, "priced", {"text": "2"})["status"] == "completed"
    reply = call(conn, "priced", {"text": "3"})
    assert error_code(reply) == "ADMISSION_BLOCKED" and "hard limit -10.00" in reply["error"]["message"]
    assert call(conn, "echo", {"text": "free"})["status"] == "completed"


@pytest.mark.parametrize("uri, ok", [
    ("", True), ("knarr:///s/echo", True), ("knarr:///s/echo@1.0", True), ("knarr://%s/s/echo" % NODE_ID, True),
    ("knarr://%s/s/echo" % ("b" * 64), False), ("knarr:///m/echo", False), ("knarr:///s/other", False),
    ("http://x/s/echo", False),
])
def test_uri_must_address_this_nodes_skill(conn, uri, ok):
    reply = call(conn, "echo", {"text": "u"}, uri=uri)
    assert (reply["status"] == "completed") if ok else (error_code(reply) == "URI_MISMATCH")


def test_ctx_handler_errors_and_timeouts(conn):
    reply = call(conn, "ctx", {"k": 1})
    assert reply["output_data"] == {"ctx": {"skill": "ctx", "node_id": NODE_ID, "task_id": conn.last_sent["task_id"]},
                                    "got": 1}
    assert error_code(call(conn, "boom", {})) == "HANDLER_ERROR"
    assert error_code(call(conn, "slow", {}, timeout_ms=300)) == "TIMEOUT"


# --------------------------------------------------------------------------- cockpit, health, stop

def test_cockpit_health_is_open_and_the_api_needs_the_token(node):
    port = node.nd.cockpit_port
    status, body = http_get(port, "/health")
    assert status == 200 and body["status"] == "ok" and body["version"] == "0.57.0"
    assert http_get(port, "/api/status")[0] == 401
    assert http_get(port, "/api/status", token="wrong")[0] == 401
    assert http_get(port, "/api/skills")[0] == 401
    status, body = http_get(port, "/api/status", token=TOKEN)
    assert status == 200 and body["node_id"] == NODE_ID and body["public_key"] == RFC_PUBKEY.hex()
    assert "echo" in body["skills"] and body["tls"] is True
    assert http_get(port, "/nope", token=TOKEN)[0] == 404


def test_cockpit_without_a_token_makes_one_and_serves_https_by_default(node_dir):
    node_dir.cockpit = {}
    node_dir.write_config()
    r = Running(node_dir)
    try:
        token_file = node_dir.root / ".cockpit_token"
        token = token_file.read_text().strip()
        assert token.startswith("knarr-") and stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token not in r.stdout + r.stderr
        assert http_get(node_dir.cockpit_port, "/api/status", tls=True)[0] == 401
        status, body = http_get(node_dir.cockpit_port, "/api/status", token=token, tls=True)
        assert status == 200 and body["node_id"] == NODE_ID
        assert (node_dir.root / "cockpit-cert.pem").exists()
    finally:
        r.stop()


def test_health_command_is_a_local_signed_heartbeat(node_dir):
    assert node_dir.run("health").returncode == 1  # nothing listening yet
    r = Running(node_dir)
    try:
        res = node_dir.run("health")
    finally:
        r.stop()
    assert res.returncode == 0, res.stderr
    assert NODE_ID in res.stdout


def test_sigterm_stops_within_one_second_even_with_an_open_connection(node, conn):
    conn.heartbeat()
    t0 = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 1.0


def test_sigterm_while_a_handler_blocks_still_stops_fast(node_dir):
    (node_dir.root / "skills" / "block.py").write_text("import time\nasync def handle(d):\n    time.sleep(3600)\n")
    node_dir.write_config('\n[skills.block]\nhandler = "skills/block.py:handle"\nprice = 0\n')
    r = Running(node_dir)
    try:
        c = kw.connect("127.0.0.1", node_dir.port, identity=CALLER_SEED)
        c.send(kw.new_message("TASK_REQUEST", task_id="b", requester_node_id=CALLER_ID, requester_host="127.0.0.1",
                              requester_port=4000, skill_name="block", input_data={}))
        time.sleep(0.3)
        # The blocking handler runs in a worker thread, as in knarr: the node still answers meanwhile.
        kp.probe_once("127.0.0.1", node_dir.port, NODE_ID, timeout=3, identity=CALLER_SEED)
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        assert r.proc.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 1.0
        c.close()
    finally:
        r.stop()


def test_version():
    res = subprocess.run([sys.executable, str(STANDIN), "--version"], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and res.stdout.startswith("knarr 0.57.0")
    assert os.access(STANDIN, os.R_OK)
