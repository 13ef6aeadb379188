# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one storage interface of the registry, and its SQLite implementation.

The registry's logic (allocation, audit chain, secrets, adoption) speaks to a :class:`Store`: statements
written once with ``?`` placeholders, rows as dicts, one write transaction at a time per registry
(:meth:`Store.begin_write` waits for any other writer), read transactions that see one snapshot.
SQLite and PostgreSQL (``store_postgres.py``) differ only here: connecting, locking, column types, the
schema version's home, and how their errors read.
"""

from __future__ import annotations

import os
import sqlite3
import time

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import RegistryError


def _dict_row(cursor, row):
    return {d[0]: v for d, v in zip(cursor.description, row)}


class Store:
    """What the registry needs of a database.  Subclasses set ``backend``, ``types`` and ``conn``."""

    backend = None
    types = {}
    location = None

    def one(self, sql, args=()):
        return self.execute(sql, args).fetchone()

    def all(self, sql, args=()):
        return self.execute(sql, args).fetchall()

    def scalar(self, sql, args=()):
        row = self.one(sql, args)
        return None if row is None else next(iter(row.values()))

    def ddl(self, text):
        """Run schema statements written with ``{INT}``, ``{REAL}``, ``{BLOB}`` for the column types."""
        for statement in text.format(**self.types).split(";"):
            if statement.strip():
                self.execute(statement)

    _meta_exists = False

    def get_meta(self, key):
        if not self._meta_exists:  # tables are never dropped: once there, always there
            if "registry_meta" not in self.tables():
                return None
            self._meta_exists = True
        return self.scalar("SELECT value FROM registry_meta WHERE key = ?", (key,))

    def set_meta(self, key, value):
        if value is None:
            self.execute("DELETE FROM registry_meta WHERE key = ?", (key,))
        else:
            self.execute("INSERT INTO registry_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                         " value = excluded.value", (key, value))

    def fail(self, exc, doing):
        """A RegistryError for a driver error ``exc`` raised while ``doing``: names the registry and what to do."""
        raise NotImplementedError


class SQLiteStore(Store):
    """A fleet.db file (or a private in-memory database for check mode)."""

    backend = "sqlite"
    types = dict(INT="INTEGER", REAL="REAL", BLOB="BLOB")
    errors = (sqlite3.Error,)

    def __init__(self, location, busy_timeout=60.0, memory=False):
        self.location = location
        self.busy_timeout = busy_timeout
        self.memory = memory
        self.created = False
        if memory:
            self.conn = sqlite3.connect(":memory:", isolation_level=None)
        else:
            path = location.target
            directory = os.path.dirname(path)
            if not os.path.isdir(directory):
                try:
                    os.makedirs(directory, mode=0o700)
                except OSError as exc:
                    raise RegistryError("cannot create the registry's directory %s: %s" % (directory, exc),
                                        field="registry")
            self.created = not os.path.exists(path)
            try:
                self.conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
                self.conn.execute("PRAGMA busy_timeout = %d" % int(busy_timeout * 1000))
            except sqlite3.Error as exc:
                self.fail(exc, "open it")
            if self.created:
                self.private()
        self.conn.row_factory = _dict_row

    def private(self):
        """The registry file and its companions (-wal, -shm) readable by their owner only."""
        if self.memory:
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.chmod(self.location.target + suffix, 0o600)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise RegistryError("cannot make %s private (0600): %s" % (self.location.target + suffix, exc),
                                    field="registry")

    def setup(self):
        """WAL, synchronous=FULL, secure_delete -- after opening, before migrating."""
        if not self.memory and self.conn.execute("PRAGMA journal_mode").fetchone()["journal_mode"] != "wal":
            self._switch_to_wal()
        # FULL: a commit is on disk when COMMIT returns, also across a power cut (NORMAL in WAL mode may lose
        # the last commits; a lost reservation could hand one address out twice).  It costs one fsync per
        # commit, which a registry write can afford.
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA secure_delete = ON")
        self.private()  # an existing file (adopted) ends up 0600 like a new one, with its WAL

    def _switch_to_wal(self):
        # Switching needs the file to itself and SQLite does not wait for that (no busy handler):
        # processes opening a fresh registry at once retry until it is done.
        deadline = time.time() + self.busy_timeout
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                if time.time() > deadline:
                    raise RegistryError("cannot switch %s to WAL mode: another process has kept it open for %d s "
                                        "(%s). Stop what still uses the file (the original skill, a sqlite3 "
                                        "shell) and run again" % (self.location, self.busy_timeout, exc),
                                        field="registry")
                time.sleep(0.01)

    def execute(self, sql, args=()):
        return self.conn.execute(sql, args)

    def executemany(self, sql, rows):
        self.conn.executemany(sql, rows)

    def begin_write(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def begin_read(self):
        self.conn.execute("BEGIN")

    def commit(self):
        self.conn.execute("COMMIT")

    def rollback(self):
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def close(self):
        self.conn.close()

    def schema_version(self):
        return self.conn.execute("PRAGMA user_version").fetchone()["user_version"]

    def set_schema_version(self, version):
        self.conn.execute("PRAGMA user_version = %d" % int(version))

    def tables(self):
        return {r["name"] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def columns(self, table):
        return [r["name"] for r in self.conn.execute("PRAGMA table_info(%s)" % table)]

    def snapshot_into(self, other):
        """Check mode: copy this file, as of now, into the in-memory store ``other`` (a reader: no write lock)."""
        self.conn.backup(other.conn)

    def _read_only(self):
        """Why the registry's file or directory cannot be written (a read-only filesystem, no write permission),
        or None."""
        if self.memory or self.location is None:
            return None
        directory = os.path.dirname(self.location.target)
        for path in (self.location.target, directory):
            try:
                if os.statvfs(path).f_flag & os.ST_RDONLY:
                    return "%s is on a filesystem mounted read-only" % path
            except OSError:
                continue
            if not os.access(path, os.W_OK):
                return "%s is not writable by this user (uid %d)" % (path, os.geteuid())
        return None

    def fail(self, exc, doing):
        text = str(exc)
        where = self.location.display if self.location else "the registry"
        read_only = self._read_only() if ("readonly" in text or "read-only" in text or "unable to open" in text) \
            else None
        if read_only:
            msg = ("the registry %s is read-only while trying to %s: %s (%s). The registry is written on every run, "
                   "with its -wal and -shm files beside it: make the file and its directory writable for this user, "
                   "or move the registry to a writable place" % (where, doing, read_only, text))
        elif "locked" in text or "busy" in text:
            msg = ("the registry %s stayed locked by another process for more than %d s while trying to %s: "
                   "another run (or a sqlite3 shell, a backup) holds its write lock. Let it finish and run again"
                   % (where, self.busy_timeout, doing))
        elif "readonly" in text or "read-only" in text:
            msg = ("the registry %s is read-only (%s) while trying to %s: check the file's and its directory's "
                   "owner and permissions (the -wal and -shm files beside it too) and that the filesystem is not "
                   "mounted read-only" % (where, text, doing))
        elif "unable to open" in text:
            msg = "cannot open the registry %s (%s): check the path and its directory's permissions" % (where, text)
        else:
            msg = "%s is not a usable fleet registry (%s) while trying to %s" % (where, text, doing)
        raise RegistryError(msg, field="registry")
