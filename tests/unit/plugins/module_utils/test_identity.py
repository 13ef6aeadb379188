"""knarr node identities: node.db images holding one 32-byte Ed25519 seed."""

import base64
import hashlib
import os
import sqlite3
import tempfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident

# RFC 8032 section 7.1, TEST 1
RFC_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path, monkeypatch):
    """identity.py writes node.db images to temporary files: they must all be gone afterwards."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    yield
    assert os.listdir(str(scratch)) == []


def make_db(tmp_path, setup, journal="delete"):
    path = str(tmp_path / ("img-%s.db" % os.urandom(4).hex()))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = %s" % journal)
    setup(conn)
    conn.commit()
    conn.close()
    with open(path, "rb") as fh:
        return fh.read()


def b64(data):
    return base64.b64encode(data).decode("ascii")


def secret_forms(secret):
    if isinstance(secret, str):
        secret = secret.encode()
    return [secret.hex(), secret.hex().upper(), b64(secret), repr(secret), repr(secret)[2:-1]]


def assert_rejected(text, label="n1", field="node_db_b64", words=None, secrets=()):
    with pytest.raises(ident.IdentityError) as err:
        ident.seed_from_b64(text, label, field)
    msg = str(err.value)
    assert err.value.field == field and err.value.label == label
    assert ("field %r" % field) in msg and ("node %r" % label) in msg
    if words:
        assert words in msg
    for secret in secrets:
        for form in secret_forms(secret):
            assert form not in msg
    return msg


# --------------------------------------------------------------------------- round trips

def test_node_id_of_rfc8032_vector():
    assert ident.node_id_from_seed(RFC_SEED) == hashlib.sha256(RFC_PUBLIC).hexdigest()


def test_node_id_matches_independent_computation():
    for dummy in range(5):
        seed = os.urandom(32)
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        expected = hashlib.sha256(public).hexdigest()
        assert ident.node_id_from_seed(seed) == expected
        assert len(expected) == 64 and expected == expected.lower()


def test_build_and_read_round_trip():
    seed = ident.new_seed()
    assert len(seed) == 32
    image = ident.build_node_db(seed)
    assert image.startswith(b"SQLite format 3\x00")
    assert image[18:20] == b"\x01\x01"          # rollback journal: one self-contained file
    assert ident.read_seed(image) == seed
    assert ident.seed_from_b64(b64(image)) == seed
    # base64 wrapped at 76 columns (as base64(1) writes it) is accepted
    wrapped = "\n".join(b64(image)[i:i + 76] for i in range(0, len(b64(image)), 76)) + "\n"
    assert ident.seed_from_b64(wrapped) == seed


def test_knarr_written_wal_node_db_with_other_tables_is_read(tmp_path):
    seed = os.urandom(32)

    def setup(conn):
        conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
        conn.execute("INSERT INTO node_identity VALUES (?)", (seed,))
        conn.execute("CREATE TABLE peers (node_id TEXT, host TEXT)")
        conn.execute("INSERT INTO peers VALUES ('x', 'y')")
    image = make_db(tmp_path, setup, journal="wal")
    assert image[18:20] == b"\x02\x02"
    assert ident.seed_from_b64(b64(image), "n1") == seed


def test_build_refuses_wrong_seed_size():
    with pytest.raises(ident.IdentityError):
        ident.build_node_db(b"\x01" * 31)


# --------------------------------------------------------------------------- rejections

@pytest.mark.parametrize("text", ["!!! not base64 !!!", "abc", "", "   ", None, 42])
def test_not_base64(text):
    assert_rejected(text, words="base64")


def test_custom_field_name_is_used():
    msg = assert_rejected("%%%", label="alpha", field="payload_json.node_db_b64")
    assert msg.startswith("node 'alpha', field 'payload_json.node_db_b64': ")


def test_without_label_names_field_only():
    with pytest.raises(ident.IdentityError) as err:
        ident.seed_from_b64("%%%")
    assert str(err.value).startswith("field 'node_db_b64': ")


@pytest.mark.parametrize("data", [b"hello world, not a database" * 10, os.urandom(4096), b"\x00" * 100])
def test_not_sqlite(data):
    assert_rejected(b64(data), words="SQLite")


def test_sqlite_header_but_garbage():
    assert_rejected(b64(b"SQLite format 3\x00" + os.urandom(4000)))


def test_no_identity_table(tmp_path):
    image = make_db(tmp_path, lambda c: c.execute("CREATE TABLE peers (x)"))
    assert_rejected(b64(image), words="no node_identity table")


def test_empty_identity_table(tmp_path):
    image = make_db(tmp_path, lambda c: c.execute("CREATE TABLE node_identity (key_bytes BLOB)"))
    assert_rejected(b64(image), words="empty")


def test_two_identity_rows(tmp_path):
    a, b = os.urandom(32), os.urandom(32)

    def setup(conn):
        conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
        conn.executemany("INSERT INTO node_identity VALUES (?)", [(a,), (b,)])
    assert_rejected(b64(make_db(tmp_path, setup)), words="more than one", secrets=(a, b))


@pytest.mark.parametrize("size", [31, 33, 0, 64])
def test_wrong_key_size(tmp_path, size):
    key = os.urandom(size)

    def setup(conn):
        conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
        conn.execute("INSERT INTO node_identity VALUES (?)", (key,))
    msg = assert_rejected(b64(make_db(tmp_path, setup)), secrets=(key,) if size else ())
    assert "%d bytes" % size in msg


@pytest.mark.parametrize("value", ["k" * 32, "0123456789abcdef0123456789abcdef", 12345, 1.5, None])
def test_key_not_a_blob(tmp_path, value):
    def setup(conn):
        conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
        conn.execute("INSERT INTO node_identity VALUES (?)", (value,))
    msg = assert_rejected(b64(make_db(tmp_path, setup)), words="not a BLOB")
    if isinstance(value, str):
        assert value not in msg


def test_seed_never_in_any_message(tmp_path):
    """A 32-byte secret stored wrongly (as text, alongside a second row, ...) never reaches a message."""
    seed = os.urandom(32)
    cases = [
        lambda c: (c.execute("CREATE TABLE node_identity (key_bytes BLOB)"),
                   c.executemany("INSERT INTO node_identity VALUES (?)", [(seed,), (seed,)])),
        lambda c: (c.execute("CREATE TABLE node_identity (key_bytes BLOB)"),
                   c.execute("INSERT INTO node_identity VALUES (?)", (seed + b"\x00",))),
        lambda c: (c.execute("CREATE TABLE node_identity (key_bytes BLOB)"),
                   c.execute("INSERT INTO node_identity VALUES (?)", (seed.hex(),))),
        lambda c: (c.execute("CREATE TABLE identity (key_bytes BLOB)"),
                   c.execute("INSERT INTO identity VALUES (?)", (seed,))),
    ]
    for setup in cases:
        assert_rejected(b64(make_db(tmp_path, setup)), secrets=(seed,))


def test_with_wal_folds_the_write_ahead_log_into_one_file(tmp_path):
    seed = ident.new_seed()
    directory = tmp_path / "live"
    directory.mkdir()
    path = str(directory / "node.db")
    with open(path, "wb") as fh:
        fh.write(ident.build_node_db(seed))
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE peers (id TEXT)")
    writer.execute("INSERT INTO peers VALUES ('p1')")
    writer.commit()
    with open(path, "rb") as fh:
        db = fh.read()
    with open(path + "-wal", "rb") as fh:
        wal = fh.read()
    writer.close()
    assert wal  # the table lives only in the log so far
    merged = ident.with_wal(db, wal)
    assert ident.read_seed(merged) == seed
    out = str(tmp_path / "merged.db")
    with open(out, "wb") as fh:
        fh.write(merged)
    assert sqlite3.connect(out).execute("SELECT id FROM peers").fetchall() == [("p1",)]
    assert ident.with_wal(db, None) is db


# --------------------------------------------------------------------------- damaged and hostile files

def big_db(tmp_path, seed):
    """A node.db of many pages, its identity row written last (so it lives on a late page)."""
    def setup(conn):
        conn.execute("CREATE TABLE peers (blob BLOB)")
        conn.executemany("INSERT INTO peers VALUES (?)", [(os.urandom(3000),) for dummy in range(40)])
        conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
        conn.execute("INSERT INTO node_identity VALUES (?)", (seed,))
    return make_db(tmp_path, setup)


def test_truncated_node_db_is_refused_not_read_as_zeros(tmp_path):
    seed = os.urandom(32)
    image = big_db(tmp_path, seed)
    page = int.from_bytes(image[16:18], "big")
    assert ident.read_seed(image) == seed and len(image) > 10 * page
    msg = assert_rejected(b64(image[:-page]), words="is truncated: its header counts", secrets=(seed,))
    assert "%d bytes" % (len(image) - page) in msg
    assert_rejected(b64(image[:len(image) // 2 + 7]), words="not a whole number of %d-byte pages" % page)
    assert_rejected(b64(image[:60]), words="shorter than an SQLite header")


def test_damaged_page_fails_quick_check(tmp_path):
    seed = os.urandom(32)
    image = bytearray(big_db(tmp_path, seed))
    page = int.from_bytes(image[16:18], "big")
    image[3 * page:4 * page] = b"\xff" * page  # a b-tree page of the peers table, overwritten, size unchanged
    assert_rejected(b64(bytes(image)), words="damaged (SQLite quick_check", secrets=(seed,))


def test_invalid_page_size_is_refused(tmp_path):
    image = bytearray(ident.build_node_db(os.urandom(32)))
    image[16:18] = (1000).to_bytes(2, "big")
    assert_rejected(b64(bytes(image)), words="invalid SQLite page size")


def test_untrusted_databases_are_opened_without_trusting_their_schema(tmp_path):
    """trusted_schema off: a view (or trigger) of a database from a container cannot call an SQL function
    with side effects, even one the reading connection has registered."""
    path = str(tmp_path / "hostile.db")
    conn = sqlite3.connect(path)
    conn.create_function("side_effect", 0, lambda: 1)
    conn.execute("CREATE VIEW v AS SELECT side_effect() AS x")
    conn.commit()
    conn.close()
    calls = []
    conn = ident.open_untrusted(path)
    try:
        assert conn.execute("PRAGMA trusted_schema").fetchone() == (0,)
        conn.create_function("side_effect", 0, lambda: calls.append(1) or 1)
        with pytest.raises(sqlite3.OperationalError, match="unsafe use of side_effect"):
            conn.execute("SELECT x FROM v").fetchall()
    finally:
        conn.close()
    assert calls == []


def test_with_wal_refuses_a_truncated_database(tmp_path):
    image = big_db(tmp_path, os.urandom(32))
    page = int.from_bytes(image[16:18], "big")
    with pytest.raises(ident.IdentityError, match="truncated"):
        ident.with_wal(image[:-page], b"some wal")
