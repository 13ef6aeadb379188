"""Tests for the knarr stand-in (images/knarr-cluster-node/knarr_standin.py).

The stand-in runs as a real subprocess on the host Python (no Docker), bound
to free loopback ports in a temporary directory.
"""

import hashlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REPO_ROOT = Path(__file__).resolve().parents[3]
STANDIN = REPO_ROOT / "images" / "knarr-cluster-node" / "knarr_standin.py"

# RFC 8032 section 7.1, TEST 1: secret key (seed) and its public key.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBKEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
TOKEN = "cockpit-test-token"

ECHO_PY = textwrap.dedent(
    """\
    async def handle(input_data):
        return {"text": input_data["text"]}
    """
)
CTX_PY = textwrap.dedent(
    """\
    async def handle(input_data, ctx):
        return {"ctx": ctx, "got": input_data}
    """
)
BOOM_PY = textwrap.dedent(
    """\
    async def handle(input_data):
        raise RuntimeError("kaboom")
    """
)


def expected_node_id(seed=SEED):
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )
    return hashlib.sha256(pub).hexdigest()


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
        (root / "skills" / "echo.py").write_text(ECHO_PY)
        (root / "skills" / "ctx.py").write_text(CTX_PY)
        (root / "skills" / "boom.py").write_text(BOOM_PY)
        self.extra_toml = ""
        self.write_config()
        write_identity(self.db)

    def write_config(self, extra=""):
        self.config.write_text(
            textwrap.dedent(
                f"""\
                [node]
                host = "127.0.0.1"
                port = {self.port}
                advertise_host = "198.51.100.7"
                storage = "node.db"

                [cockpit]
                port = {self.cockpit_port}
                bind = "127.0.0.1"
                auth_token = "{TOKEN}"

                [fenrir]
                label = "test-node"
                location = "lab"

                [skills.echo]
                handler = "skills/echo.py:handle"
                description = "Echo the text back"
                tags = ["util", "test"]
                price = 0

                [skills.ctx]
                handler = "skills/ctx.py:handle"

                [skills.boom]
                handler = "skills/boom.py:handle"
                """
            )
            + extra
        )

    def run(self, *args, timeout=15):
        return subprocess.run(
            [sys.executable, str(STANDIN), *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )


class Running:
    """A started `knarr serve`, stdout/stderr captured to files."""

    def __init__(self, nd: NodeDir):
        self.nd = nd
        self.out_path = nd.root / "serve.stdout"
        self.err_path = nd.root / "serve.stderr"
        self._out = open(self.out_path, "w")
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(STANDIN), "serve", "--config", str(nd.config)],
            stdout=self._out,
            stderr=self._err,
            cwd=nd.root,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"stand-in exited early with {self.proc.returncode}: {self.stderr}"
                )
            try:
                socket.create_connection(("127.0.0.1", nd.port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", nd.cockpit_port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("stand-in did not start listening within 15 s")
                time.sleep(0.05)

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


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def send_raw(self, data: bytes):
        self.sock.sendall(data)
        line = self.file.readline()
        assert line.endswith(b"\n"), f"no complete response line: {line!r}"
        return json.loads(line)

    def request(self, obj):
        return self.send_raw(json.dumps(obj).encode() + b"\n")

    def close(self):
        self.file.close()
        self.sock.close()


@pytest.fixture
def node_dir(tmp_path):
    return NodeDir(tmp_path)


@pytest.fixture
def node(node_dir):
    r = Running(node_dir)
    yield r
    r.stop()


@pytest.fixture
def client(node):
    c = Client(node.nd.port)
    yield c
    c.close()


def http_get(port, path, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ---------------------------------------------------------------------------


def test_expected_node_id_matches_rfc8032_vector():
    # Guards the test's own derivation against the published key pair.
    assert expected_node_id() == hashlib.sha256(RFC_PUBKEY).hexdigest()


def test_status_reports_derived_node_id(node, client):
    resp = client.request({"op": "status"})
    assert resp == {
        "ok": True,
        "node_id": expected_node_id(),
        "label": "test-node",
        "location": "lab",
        "advertise_host": "198.51.100.7",
        "port": node.nd.port,
        "skills": ["boom", "ctx", "echo"],
    }
    assert f"knarr: loaded persistent identity {expected_node_id()}" in node.stdout
    assert SEED.hex() not in node.stdout + node.stderr


def test_different_seed_gives_different_node_id(node_dir):
    other = bytes(range(32))
    node_dir.db.unlink()
    write_identity(node_dir.db, rows=(other,))
    r = Running(node_dir)
    try:
        c = Client(node_dir.port)
        resp = c.request({"op": "status"})
        c.close()
    finally:
        r.stop()
    assert resp["node_id"] == expected_node_id(other)
    assert resp["node_id"] != expected_node_id()


def test_echo_round_trips_many_requests_on_one_connection(client):
    for text in ["hello", "", "ünïcødé ✓", "x" * 10000]:
        assert client.request({"op": "call", "skill": "echo", "input": {"text": text}}) == {
            "ok": True,
            "output": {"text": text},
        }
    # request id is echoed back
    resp = client.request({"op": "call", "skill": "echo", "input": {"text": "a"}, "id": 42})
    assert resp == {"ok": True, "output": {"text": "a"}, "id": 42}


def test_ctx_is_passed_to_two_argument_handlers(client):
    resp = client.request({"op": "call", "skill": "ctx", "input": {"k": 1}})
    assert resp == {
        "ok": True,
        "output": {"ctx": {"skill": "ctx", "node_id": expected_node_id()}, "got": {"k": 1}},
    }


def test_unknown_skill_is_an_error_not_a_crash(node, client):
    resp = client.request({"op": "call", "skill": "nope", "input": {}})
    assert resp["ok"] is False
    assert "nope" in resp["error"]
    assert client.request({"op": "status"})["ok"] is True
    assert node.proc.poll() is None


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"this is not json\n", "JSON"),
        (b"[1, 2]\n", "object"),
        (b'{"op": "call", "skill": "echo", "input": [1]}\n', "input"),
        (b'{"op": "call", "skill": "echo", "input": "text"}\n', "input"),
        (b'{"op": "frobnicate"}\n', "frobnicate"),
        (b'{"op": "call", "skill": "echo", "input": {}}\n', "KeyError"),
        (b'{"op": "call", "skill": "boom", "input": {}}\n', "kaboom"),
    ],
)
def test_bad_requests_get_ok_false_and_connection_survives(client, raw, fragment):
    resp = client.send_raw(raw)
    assert resp["ok"] is False
    assert fragment in resp["error"]
    assert client.request({"op": "call", "skill": "echo", "input": {"text": "still here"}}) == {
        "ok": True,
        "output": {"text": "still here"},
    }


def test_oversized_line_gets_error_and_close(node):
    c = Client(node.nd.port)
    try:
        c.sock.sendall(b'{"op":"status","pad":"' + b"x" * (1024 * 1024 + 16) + b'"}\n')
        line = c.file.readline()
        resp = json.loads(line)
        assert resp["ok"] is False
        assert "1 MiB" in resp["error"]
        assert c.file.readline() == b""  # server closed the connection
    finally:
        c.close()
    # the server itself is fine
    c2 = Client(node.nd.port)
    try:
        assert c2.request({"op": "status"})["ok"] is True
    finally:
        c2.close()


def test_line_just_under_limit_is_accepted(client):
    text = "y" * (1024 * 1024 - 100)
    line = json.dumps({"op": "call", "skill": "echo", "input": {"text": text}}).encode()
    assert len(line) <= 1024 * 1024
    resp = client.send_raw(line + b"\n")
    assert resp == {"ok": True, "output": {"text": text}}


def test_cockpit_requires_bearer_token(node):
    port = node.nd.cockpit_port
    assert http_get(port, "/api/status")[0] == 401
    assert http_get(port, "/api/status", token="wrong")[0] == 401
    assert http_get(port, "/api/skills")[0] == 401

    status, body = http_get(port, "/api/status", token=TOKEN)
    assert status == 200
    assert body["ok"] is True and body["node_id"] == expected_node_id()
    assert body["skills"] == ["boom", "ctx", "echo"]

    status, body = http_get(port, "/api/skills", token=TOKEN)
    assert status == 200
    echo = next(s for s in body["skills"] if s["name"] == "echo")
    assert echo == {
        "name": "echo",
        "description": "Echo the text back",
        "tags": ["util", "test"],
        "price": 0,
    }

    assert http_get(port, "/nope", token=TOKEN)[0] == 404


def test_cockpit_without_token_is_open(node_dir):
    node_dir.config.write_text(node_dir.config.read_text().replace(f'auth_token = "{TOKEN}"\n', ""))
    r = Running(node_dir)
    try:
        status, body = http_get(node_dir.cockpit_port, "/api/status")
    finally:
        r.stop()
    assert status == 200 and body["node_id"] == expected_node_id()


def test_health_command(node_dir):
    assert node_dir.run("health").returncode == 1  # nothing listening yet
    r = Running(node_dir)
    try:
        res = node_dir.run("health")
    finally:
        r.stop()
    assert res.returncode == 0, res.stderr


def test_unknown_config_keys_warn_but_start(node_dir):
    node_dir.write_config('\n[mystery]\nvalue = 1\n')
    node_dir.config.write_text(
        node_dir.config.read_text().replace('storage = "node.db"', 'storage = "node.db"\nturbo = true')
    )
    r = Running(node_dir)
    try:
        c = Client(node_dir.port)
        assert c.request({"op": "status"})["ok"] is True
        c.close()
        err = r.stderr
    finally:
        r.stop()
    assert "mystery" in err
    assert "node.turbo" in err


def test_identity_database_is_not_modified(node_dir):
    before = node_dir.db.read_bytes()
    mtime = node_dir.db.stat().st_mtime_ns
    r = Running(node_dir)
    r.proc.send_signal(signal.SIGTERM)
    r.proc.wait(5)
    r.stop()
    assert node_dir.db.read_bytes() == before
    assert node_dir.db.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in node_dir.root.iterdir() if p.name.startswith("node.db")) == [
        "node.db"
    ]


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
        c = Client(node_dir.port)
        resp = c.request({"op": "status"})
        c.close()
    finally:
        r.stop()
    assert resp["node_id"] == expected_node_id()


# --- refusing to start -----------------------------------------------------


def _missing(db):
    db.unlink()


def _not_sqlite(db):
    db.write_bytes(b"this is definitely not an SQLite database\n" * 50)


def _empty_table(db):
    db.unlink()
    write_identity(db, rows=())


def _short_key(db):
    db.unlink()
    write_identity(db, rows=(SEED[:31],))


def _long_key(db):
    db.unlink()
    write_identity(db, rows=(SEED + b"\x00",))


def _two_rows(db):
    db.unlink()
    write_identity(db, rows=(SEED, bytes(32)))


def _no_table(db):
    db.unlink()
    write_identity(db, create_table=False)


def _hex_text_key(db):
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
    conn.execute("INSERT INTO node_identity VALUES (?)", (SEED.hex(),))
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "breakage, reason",
    [
        (_missing, "does not exist"),
        (_not_sqlite, "not an SQLite database"),
        (_empty_table, "no row"),
        (_short_key, "31 bytes"),
        (_long_key, "33 bytes"),
        (_two_rows, "more than one row"),
        (_no_table, "no node_identity table"),
        (_hex_text_key, "not a 32-byte blob"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_refuses_to_start_on_bad_identity(node_dir, breakage, reason):
    breakage(node_dir.db)
    res = node_dir.run("serve")
    assert res.returncode == 3, (res.returncode, res.stdout, res.stderr)
    assert "knarr: refusing to start:" in res.stderr
    assert reason in res.stderr
    combined = (res.stdout + res.stderr).lower()
    for secret in (SEED.hex(), SEED[:31].hex(), SEED[:16].hex()):
        assert secret not in combined
    assert "loaded persistent identity" not in res.stdout
    # it did not start listening
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", node_dir.port), timeout=0.5).close()


def test_missing_database_is_not_created(node_dir):
    node_dir.db.unlink()
    assert node_dir.run("serve").returncode == 3
    assert not node_dir.db.exists()


@pytest.mark.parametrize(
    "skill_toml, skill_py",
    [
        ('handler = "skills/broken.py:handle"', "def handle(:\n"),  # syntax error
        ('handler = "skills/broken.py:handle"', "raise ImportError('no deps')\n"),
        ('handler = "skills/broken.py:nothere"', "async def handle(d):\n    return d\n"),
        ('handler = "skills/missing.py:handle"', None),
        ('handler = "no-colon.py"', None),
    ],
)
def test_skill_that_fails_to_load_exits_4(node_dir, skill_toml, skill_py):
    if skill_py is not None:
        (node_dir.root / "skills" / "broken.py").write_text(skill_py)
    node_dir.write_config(f"\n[skills.brokenskill]\n{skill_toml}\n")
    res = node_dir.run("serve")
    assert res.returncode == 4, (res.returncode, res.stdout, res.stderr)
    assert "brokenskill" in res.stderr
    assert "knarr: refusing to start:" in res.stderr


# --- stopping ----------------------------------------------------------------


def test_sigterm_stops_within_one_second(node):
    c = Client(node.nd.port)  # an open idle connection must not delay the stop
    try:
        assert c.request({"op": "status"})["ok"] is True
        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        rc = node.proc.wait(timeout=5)
        elapsed = time.monotonic() - t0
    finally:
        c.close()
    assert rc == 0
    assert elapsed < 1.0, f"took {elapsed:.3f}s to stop"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", node.nd.port), timeout=0.5).close()


def test_sigterm_while_a_handler_hangs_still_stops_fast(node_dir):
    (node_dir.root / "skills" / "hang.py").write_text(
        "import asyncio\nasync def handle(d):\n    await asyncio.sleep(3600)\n    return {}\n"
    )
    node_dir.write_config('\n[skills.hang]\nhandler = "skills/hang.py:handle"\n')
    r = Running(node_dir)
    try:
        c = Client(node_dir.port)
        c.sock.sendall(b'{"op":"call","skill":"hang","input":{}}\n')
        time.sleep(0.2)
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        rc = r.proc.wait(timeout=5)
        elapsed = time.monotonic() - t0
        c.close()
    finally:
        r.stop()
    assert rc == 0
    assert elapsed < 1.0, f"took {elapsed:.3f}s to stop"


def test_sigterm_while_a_handler_blocks_the_event_loop_still_stops_fast(node_dir):
    # A synchronous sleep inside an async handler blocks the whole event loop;
    # the SIGTERM backstop must still end the process within a second.
    (node_dir.root / "skills" / "block.py").write_text(
        "import time\nasync def handle(d):\n    time.sleep(3600)\n    return {}\n"
    )
    node_dir.write_config('\n[skills.block]\nhandler = "skills/block.py:handle"\n')
    r = Running(node_dir)
    try:
        c = Client(node_dir.port)
        c.sock.sendall(b'{"op":"call","skill":"block","input":{}}\n')
        time.sleep(0.2)
        t0 = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        rc = r.proc.wait(timeout=5)
        elapsed = time.monotonic() - t0
        c.close()
    finally:
        r.stop()
    assert rc == 0
    assert elapsed < 1.0, f"took {elapsed:.3f}s to stop"
