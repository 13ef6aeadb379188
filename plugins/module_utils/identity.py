# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""knarr node identities: the node.db SQLite file holding one 32-byte Ed25519 seed.

The node id is the lowercase hex SHA-256 of the Ed25519 verify (public) key derived
from the seed.  Seeds are handled as bytes and never formatted into a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import sqlite3
import tempfile

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError

SEED_SIZE = 32
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_HEADER_SIZE = 100


class IdentityError(FleetError):
    """A node.db or seed that is not a knarr identity.  ``field`` says which input."""

    def __init__(self, message, label=None, field="node_db_b64"):
        super().__init__(message, label=label, field=field)


def new_seed():
    return os.urandom(SEED_SIZE)


def node_id_from_seed(seed):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    public = Ed25519PrivateKey.from_private_bytes(bytes(seed)).public_key()
    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()


def decode_b64(text, label=None, field="node_db_b64"):
    if not isinstance(text, str) or not text.strip():
        raise IdentityError("must be a non-empty base64 string", label, field)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError("is not valid base64", label, field)


def build_node_db(seed):
    """A fresh node.db (rollback journal, one file) holding only the identity row."""
    if len(seed) != SEED_SIZE:
        raise IdentityError("seed must be %d bytes, got %d" % (SEED_SIZE, len(seed)))
    fd, path = tempfile.mkstemp(prefix="node-", suffix=".db")
    os.close(fd)
    try:
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("PRAGMA synchronous = OFF")  # a scratch file, read back at once
            conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
            conn.execute("INSERT INTO node_identity (key_bytes) VALUES (?)", (sqlite3.Binary(bytes(seed)),))
            conn.commit()
        finally:
            conn.close()
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


def check_layout(db_bytes, label=None, field="node_db_b64"):
    """Refuse an SQLite image whose size does not match its header: a truncated node.db would otherwise be
    read with its missing pages as zeros (SQLite pads a short read), and a half-copied file could pass.

    The header holds the page size (offset 16) and, when it is current (offset 92 equals the change
    counter at 24), the page count (offset 28): the file must be whole pages, at least that many."""
    if len(db_bytes) < SQLITE_HEADER_SIZE:
        raise IdentityError("node.db is truncated: %d bytes, shorter than an SQLite header" % len(db_bytes),
                            label, field)
    page_size = int.from_bytes(db_bytes[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise IdentityError("node.db has an invalid SQLite page size (%d)" % page_size, label, field)
    if len(db_bytes) % page_size:
        raise IdentityError("node.db is truncated or padded: %d bytes is not a whole number of %d-byte pages"
                            % (len(db_bytes), page_size), label, field)
    page_count = int.from_bytes(db_bytes[28:32], "big")
    if page_count and db_bytes[92:96] == db_bytes[24:28] and len(db_bytes) < page_count * page_size:
        raise IdentityError("node.db is truncated: its header counts %d pages of %d bytes (%d bytes), the file "
                            "has %d bytes" % (page_count, page_size, page_count * page_size, len(db_bytes)), label, field)
    return page_size


def open_untrusted(path, label=None, field="node_db_b64", readonly=True):
    """An sqlite3 connection to a database that came from outside (a container, an operator): read-only and
    immutable unless ``readonly`` is false, with ``trusted_schema`` off, so nothing in its schema (a view,
    a trigger, a generated column) can run an SQL function with side effects when it is read."""
    try:
        if readonly:
            conn = sqlite3.connect("file:%s?mode=ro&immutable=1" % path, uri=True)
        else:
            conn = sqlite3.connect(path)
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA cell_size_check = ON")
    except sqlite3.Error as exc:
        raise IdentityError("cannot be opened as SQLite: %s" % exc, label, field)
    return conn


def read_seed(db_bytes, label=None, field="node_db_b64"):
    """Validate a node.db image and return its seed; IdentityError says what is wrong.

    Refused: no SQLite header, a size that does not match the header (:func:`check_layout`), a database
    that fails ``PRAGMA quick_check``, no ``node_identity`` table or not exactly one 32-byte BLOB in it."""
    if not db_bytes:
        raise IdentityError("node.db is empty", label, field)
    if not db_bytes.startswith(SQLITE_MAGIC):
        raise IdentityError("is not an SQLite database (no SQLite header)", label, field)
    check_layout(db_bytes, label, field)
    fd, path = tempfile.mkstemp(prefix="node-", suffix=".db")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(db_bytes)
        conn = open_untrusted(path, label, field)
        try:
            try:
                try:
                    problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)").fetchall()]
                except sqlite3.DatabaseError as exc:
                    problems = [str(exc)]
                if problems != ["ok"]:
                    raise IdentityError("node.db is damaged (SQLite quick_check: %s)" % "; ".join(
                        str(p)[:120] for p in problems), label, field)
                has_table = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'node_identity'").fetchone()
                if not has_table:
                    raise IdentityError("node.db has no node_identity table", label, field)
                rows = conn.execute("SELECT key_bytes FROM node_identity LIMIT 2").fetchall()
            except sqlite3.DatabaseError as exc:
                raise IdentityError("node.db is not a readable SQLite database: %s" % exc, label, field)
        finally:
            conn.close()
    finally:
        os.unlink(path)
    if not rows:
        raise IdentityError("node.db holds no identity (node_identity is empty)", label, field)
    if len(rows) > 1:
        raise IdentityError("node.db holds more than one identity row", label, field)
    key = rows[0][0]
    if not isinstance(key, (bytes, bytearray)):
        raise IdentityError("the identity key is not a BLOB", label, field)
    if len(key) != SEED_SIZE:
        raise IdentityError("the identity key is %d bytes; an Ed25519 seed is %d" % (len(key), SEED_SIZE),
                            label, field)
    return bytes(key)


def with_wal(db_bytes, wal_bytes=None):
    """One self-contained node.db image from a database file and its write-ahead log (if any).

    A node's node.db holds more than its identity (peers, ledger, ...), and what it wrote last may
    still sit in ``node.db-wal``: both are applied to a scratch copy and checkpointed into one file.
    """
    if not wal_bytes:
        return db_bytes
    if db_bytes.startswith(SQLITE_MAGIC):
        check_layout(db_bytes)
    directory = tempfile.mkdtemp(prefix="node-")
    path = os.path.join(directory, "node.db")
    try:
        with open(path, "wb") as fh:
            fh.write(db_bytes)
        with open(path + "-wal", "wb") as fh:
            fh.write(wal_bytes)
        conn = open_untrusted(path, readonly=False)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode = DELETE")
        finally:
            conn.close()
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def seed_from_b64(text, label=None, field="node_db_b64"):
    return read_seed(decode_b64(text, label, field), label, field)
