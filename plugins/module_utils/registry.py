# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet registry: fleet.db (SQLite), address allocation, secrets and the audit chain.

Everything that changes the registry goes through :class:`Registry` inside one
``BEGIN IMMEDIATE`` transaction, so any number of processes can allocate against
one file at once: SQLite serialises the writers, the UNIQUE index on ``ip_int``
makes a shared address impossible, and ``label`` as primary key makes a label
one node.  Every change appends an audit entry chained by SHA-256 in the same
transaction.  Before it changes a record, the registry checks that the record is
still what the newest audit entry of its label says (one index probe), so an edit
made behind the registry's back is refused rather than recorded as history, and
:meth:`Registry.verify` checks that every entry of a label starts where the
previous one ended.

Check mode plans on a private in-memory copy of the file: it never takes the
registry's write lock and never writes the file.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import ipaddress
import itertools
import json
import os
import socket
import sqlite3
import time

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import container_name, is_valid_label

# 1: the original skill's fleet_nodes; 2: nodes + audit; 3: + pool_cursor;
# 4: held_runs (replaces pool_cursor), audit index by label, registry_meta.
SCHEMA_VERSION = 4
STATUSES = ("provisioning", "running", "online", "failed", "destroyed")
ACTIVE_STATUSES = ("provisioning", "running", "online", "failed")
DEFAULT_SUBNET = "172.21.0.0/24"
DEFAULT_GATEWAY = "172.21.0.1"
DEFAULT_POOL_START = "172.21.0.10"
DEFAULT_POOL_END = "172.21.0.249"
GENESIS_HASH = "0" * 64
LIVE_WITHOUT_ADDRESS = ("failed", "destroyed")  # the only statuses a record without an address may have
SCRUB_PENDING = "scrub_pending"  # registry_meta key: adopted plain text not yet wiped from the file

# Columns of the node record, in order.  ``secrets`` is a Fernet token and never
# leaves this module in clear; ``ip_int`` is the reservation (NULL = no address held).
COLUMNS = (
    "label", "server_id", "provider", "location", "ip", "ip_int", "node_id",
    "container_id", "nonce", "status", "reason", "secrets",
    "created_at", "updated_at", "last_seen", "report_received_at",
)
PUBLIC_COLUMNS = tuple(c for c in COLUMNS if c not in ("secrets", "ip_int"))
MUTABLE_FIELDS = ("server_id", "provider", "location", "nonce", "node_id", "container_id",
                  "status", "reason", "last_seen", "report_received_at")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    label TEXT PRIMARY KEY,
    server_id TEXT NOT NULL,
    provider TEXT NOT NULL DEFAULT 'docker',
    location TEXT,
    ip TEXT,
    ip_int INTEGER UNIQUE,
    node_id TEXT,
    container_id TEXT,
    nonce TEXT,
    status TEXT NOT NULL DEFAULT 'provisioning'
        CHECK (status IN ('provisioning', 'running', 'online', 'failed', 'destroyed')),
    reason TEXT,
    secrets BLOB,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_seen REAL,
    report_received_at REAL,
    CHECK (ip_int IS NULL OR status != 'destroyed')
);
CREATE INDEX IF NOT EXISTS nodes_status ON nodes (status);
CREATE TABLE IF NOT EXISTS held_runs (
    run_start INTEGER PRIMARY KEY,
    run_end INTEGER NOT NULL,
    CHECK (run_end >= run_start)
);
CREATE TABLE IF NOT EXISTS audit (
    height INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    label TEXT,
    before TEXT,
    after TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS audit_label ON audit (label, height);
CREATE TABLE IF NOT EXISTS registry_meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
"""
# held_runs: the held addresses (ip_int of every record) as maximal runs of consecutive addresses,
# kept in the same transactions as the records.  The lowest free address from any point is then one
# index probe: the run containing the point ends just before it.  audit_label finds the newest entry
# of a label in one probe (the check before every write).


class RegistryError(FleetError):
    """Bad input or a refused change.  ``label`` and ``field`` say where."""


# --------------------------------------------------------------------------- addresses

class Pool:
    """The network a registry allocates from: subnet, gateway and the dynamic range."""

    def __init__(self, subnet=DEFAULT_SUBNET, gateway=DEFAULT_GATEWAY,
                 start=DEFAULT_POOL_START, end=DEFAULT_POOL_END):
        try:
            self.subnet = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as exc:
            raise RegistryError("subnet %r is not an IPv4 network: %s" % (subnet, exc), field="subnet")
        if self.subnet.prefixlen < 16 or self.subnet.prefixlen > 29:
            raise RegistryError("subnet %s: prefix length must be between /16 and /29" % subnet, field="subnet")
        self.gateway = self._address(gateway, "gateway")
        self.start = self._address(start, "pool_start")
        self.end = self._address(end, "pool_end")
        if self.start > self.end:
            raise RegistryError("pool_start %s is after pool_end %s" % (self.start, self.end), field="pool_start")
        reserved = {self.subnet.network_address: "the network address",
                    self.subnet.broadcast_address: "the broadcast address",
                    self.gateway: "the gateway"}
        for addr, what in reserved.items():
            if self.start <= addr <= self.end:
                raise RegistryError("pool %s-%s includes %s %s" % (self.start, self.end, what, addr),
                                    field="pool_start")

    def _address(self, value, field):
        try:
            addr = ipaddress.IPv4Address(value)
        except ValueError:
            raise RegistryError("%r is not an IPv4 address" % (value,), field=field)
        if addr not in self.subnet or addr in (self.subnet.network_address, self.subnet.broadcast_address):
            raise RegistryError("%s is not a host address of subnet %s" % (addr, self.subnet), field=field)
        return addr

    @property
    def size(self):
        return int(self.end) - int(self.start) + 1

    def check_pinned(self, value, label):
        """A pinned address must be a usable host address of the subnet (it may lie outside the pool)."""
        try:
            addr = ipaddress.IPv4Address(value)
        except ValueError:
            raise RegistryError("pinned ip %r is not an IPv4 address" % (value,), label=label, field="ip")
        if addr not in self.subnet:
            raise RegistryError("pinned ip %s is outside subnet %s" % (addr, self.subnet), label=label, field="ip")
        if addr == self.gateway:
            raise RegistryError("pinned ip %s is the network's gateway" % addr, label=label, field="ip")
        if addr in (self.subnet.network_address, self.subnet.broadcast_address):
            raise RegistryError("pinned ip %s is the subnet's network or broadcast address" % addr,
                                label=label, field="ip")
        return addr

    def as_dict(self):
        return dict(subnet=str(self.subnet), gateway=str(self.gateway),
                    pool_start=str(self.start), pool_end=str(self.end))


# --------------------------------------------------------------------------- secrets

def _fernet(key):
    from cryptography.fernet import Fernet
    return Fernet(key)


def load_or_create_key(path, create):
    """The registry's secret key (Fernet), kept in a 0600 file beside fleet.db.

    A new key is written whole to a private temporary file in the same directory, flushed to disk, and
    only then linked into place: ``path`` never exists half-written, whatever kills the process.  When
    another process links its key first, that key is read and used.
    """
    for attempt in range(3):
        try:
            with open(path, "rb") as fh:
                key = fh.read().strip()
            break
        except FileNotFoundError:
            if not create:
                return None
            if attempt == 2:
                raise RegistryError("registry key %s disappears as soon as it is created" % path, field="key_file")
            _create_key(path)  # then read what is in place: ours, or the key of a process that won the race
        except OSError as exc:
            raise RegistryError("cannot read registry key %s: %s" % (path, exc), field="key_file")
    if not key:
        raise RegistryError("registry key %s is empty (an older fenrir.fleet was interrupted while creating "
                            "it); if no node has an identity yet (has_identity false everywhere) "
                            "remove the file and run again, else restore it from a backup" % path, field="key_file")
    try:
        _fernet(key)
    except ValueError:
        raise RegistryError("registry key %s is not a valid key" % path, field="key_file")
    return key


def _create_key(path):
    """Put a fresh key at ``path`` unless one is there; True when ours was linked."""
    import tempfile
    from cryptography.fernet import Fernet
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise RegistryError("cannot create registry key %s: %s" % (path, exc), field="key_file")
    try:
        try:
            os.fchmod(fd, 0o600)
            data = Fernet.generate_key() + b"\n"
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False  # another process was first: use its key
        except OSError as exc:
            raise RegistryError("cannot create registry key %s: %s" % (path, exc), field="key_file")
        try:
            dir_fd = os.open(directory, os.O_RDONLY)
        except OSError:
            return True
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
        return True
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


# --------------------------------------------------------------------------- audit chain

def _canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(height, ts, actor, action, label, before, after, prev_hash):
    payload = _canonical(dict(height=height, ts=repr(float(ts)), actor=actor, action=action, label=label,
                              before=before, after=after, prev_hash=prev_hash))
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def audit_view(row):
    """What the audit trail records of a node row: every column, the secret only as a digest."""
    if row is None:
        return None
    view = {c: row[c] for c in COLUMNS if c != "secrets"}
    view["secrets_sha256"] = hashlib.sha256(row["secrets"]).hexdigest() if row["secrets"] else None
    return view


def default_actor():
    for var in ("FENRIR_ACTOR",):
        if os.environ.get(var):
            return os.environ[var]
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry
        user = str(os.getuid())
    actor = "%s@%s" % (user, socket.gethostname())
    job = os.environ.get("AWX_JOB_ID") or os.environ.get("TOWER_JOB_ID")
    if job:
        actor += " job=%s" % job
    return actor


# --------------------------------------------------------------------------- the registry

class Registry:
    """fleet.db.  Use as a context manager; every write is one immediate transaction.

    With ``check_mode`` the registry is a private in-memory copy of the file (an empty registry when there
    is no file): changes are planned there, each transaction sees the ones before it, and nothing reaches
    the file.  Copying takes no write lock, so a dry run neither waits for a real run nor holds one up.
    """

    def __init__(self, path, key_file=None, actor=None, check_mode=False, busy_timeout=60.0):
        self.path = os.path.abspath(path)
        self.key_file = key_file or os.path.join(os.path.dirname(self.path), "fleet.key")
        self.actor = actor or default_actor()
        self.check_mode = check_mode
        self.busy_timeout = busy_timeout
        self._key = None
        self._scratch = False
        exists = os.path.exists(self.path)
        if check_mode:
            self.conn = sqlite3.connect(":memory:", isolation_level=None)
            self._scratch = True
            if exists:
                self._copy_file_into_scratch()
        else:
            directory = os.path.dirname(self.path)
            if not os.path.isdir(directory):
                try:
                    os.makedirs(directory, mode=0o700)
                except OSError as exc:
                    raise RegistryError("cannot create the registry's directory %s: %s" % (directory, exc),
                                        field="db")
            self.conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout = %d" % int(busy_timeout * 1000))
            if not exists:
                os.chmod(self.path, 0o600)
        self.conn.row_factory = sqlite3.Row
        try:
            if not check_mode and self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._switch_to_wal()
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA secure_delete = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise RegistryError("%s is not a usable fleet registry: %s" % (self.path, exc), field="db")
        except BaseException:
            self.conn.close()
            raise

    def _copy_file_into_scratch(self):
        """Check mode: the file as of now, read in one snapshot (a reader: no write lock taken or awaited)."""
        try:
            source = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            try:
                source.execute("PRAGMA busy_timeout = %d" % int(self.busy_timeout * 1000))
                source.backup(self.conn)
            finally:
                source.close()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise RegistryError("%s is not a usable fleet registry: %s" % (self.path, exc), field="db")

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
                                        "shell) and run again" % (self.path, self.busy_timeout, exc), field="db")
                time.sleep(0.01)

    # -- plumbing
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.conn.close()

    def _begin(self):
        self.conn.execute("BEGIN IMMEDIATE")

    def _end(self, ok):
        if ok and (self._scratch or not self.check_mode):
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")

    def transaction(self):
        registry = self

        class _Tx:
            def __enter__(self):
                registry._begin()
                return registry

            def __exit__(self, exc_type, exc, tb):
                registry._end(exc_type is None)
                return False
        return _Tx()

    @property
    def schema_version(self):
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _tables(self):
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    # -- schema and adoption
    def _migrate(self):
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise RegistryError("%s has schema version %d; this collection knows up to %d"
                                % (self.path, version, SCHEMA_VERSION), field="db")
        if version < SCHEMA_VERSION:
            self._begin()
            try:
                version = self.schema_version  # another process may have migrated meanwhile
                if version < SCHEMA_VERSION:
                    tables = self._tables()
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self.conn.execute(statement)
                    if "fleet_nodes" in tables:
                        self._adopt_original()
                        self.conn.execute("INSERT OR REPLACE INTO registry_meta (key, value) VALUES (?, ?)",
                                          (SCRUB_PENDING, "adopted at %r" % time.time()))
                    else:
                        self._rebuild_runs()  # schema 2 or 3: index the held addresses once
                    self.conn.execute("DROP TABLE IF EXISTS pool_cursor")
                    self.conn.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
                self._end(True)
            except BaseException:
                self._end(False)
                raise
        if not self._scratch and self._scrub_pending():
            self._scrub()

    def _scrub_pending(self):
        return self.conn.execute("SELECT 1 FROM registry_meta WHERE key = ?", (SCRUB_PENDING,)).fetchone() is not None

    def _scrub(self):
        """Wipe the plain text an adopted original fleet.db leaves in the file.

        The old table's pages, and pages or free space the original skill freed without secure_delete,
        still hold its clear-text secrets.  VACUUM rewrites every live page (into the WAL); a TRUNCATE
        checkpoint then copies them over fleet.db, cuts the file to its new size and empties the WAL.  A
        reader holding a snapshot from before keeps the checkpoint from finishing: it is retried until
        ``busy_timeout``, then refused.  The pending mark (registry_meta) goes only when it is done, so every
        later run tries again until it is.
        """
        deadline = time.time() + self.busy_timeout
        try:
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA busy_timeout = 50")
            try:
                while self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                    if time.time() >= deadline:
                        raise RegistryError(
                            "%s was adopted from the original skill, but the plain-text secrets it held could not "
                            "be wiped from the file within %d s: another process keeps it open in a read "
                            "transaction (a sqlite3 shell, a backup, a long inventory run?). Close it and run any "
                            "fenrir.fleet.fleet_node task again; until then the old plain-text values remain in "
                            "the file and its WAL" % (self.path, self.busy_timeout), field="db")
                    time.sleep(0.05)
            finally:
                self.conn.execute("PRAGMA busy_timeout = %d" % int(self.busy_timeout * 1000))
            self.conn.execute("DELETE FROM registry_meta WHERE key = ?", (SCRUB_PENDING,))
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # tidy only: that frame holds no secret
        except sqlite3.OperationalError as exc:
            raise RegistryError("%s was adopted from the original skill, but the plain-text secrets it held could "
                                "not be wiped from the file: %s. Make sure no other process uses it and run any "
                                "fenrir.fleet.fleet_node task again" % (self.path, exc), field="db")

    def _adopt_original(self):
        """Take over a fleet.db written by the original fleet-provision-docker-lite skill (schema 1).

        Every row is kept, oldest first (rows without created_at last); addresses of nodes that are not
        destroyed stay reserved.  A row the collection cannot run as it is becomes ``failed``, with a reason:
        a second row holding an address already taken (the original allocator's race), an invalid or missing
        address, or a label that is not a valid fenrir.fleet label (it keeps its address; the node can only be
        decommissioned).  An unknown status becomes ``provisioning`` and is kept in ``reason``.  The
        plain-text secret columns are moved into the encrypted ``secrets`` blob and the old table is dropped;
        :meth:`_scrub` then wipes the clear text from the file.
        """
        cols = {r[1] for r in self.conn.execute("PRAGMA table_info(fleet_nodes)")}

        def col(name):
            return name if name in cols else "NULL"

        rows = self.conn.execute(
            "SELECT label, %s AS server_id, %s AS provider, %s AS location, %s AS ip, %s AS node_id,"
            " %s AS encryption_key, %s AS seed_encrypted, %s AS nonce, %s AS status, %s AS created_at,"
            " %s AS last_seen, %s AS report_received_at FROM fleet_nodes ORDER BY %s IS NULL, %s, label"
            % tuple(col(c) for c in ("server_id", "provider", "location", "ip", "node_id", "encryption_key",
                                     "seed_encrypted", "nonce", "status", "created_at", "last_seen",
                                     "report_received_at", "created_at", "created_at"))
        ).fetchall()
        now = time.time()
        taken = {}
        for r in rows:
            reasons = []
            status = r["status"]
            if status not in STATUSES:
                reasons.append("adopted with status %r, which fenrir.fleet does not know; recorded as provisioning"
                               % status if status is not None else "adopted with no status; recorded as provisioning")
                status = "provisioning"
            ip_int = None
            if status != "destroyed":
                if not r["ip"]:
                    reasons.append("adopted with no address while %r: a live node needs one; provision it again "
                                   "or decommission it" % r["status"])
                    status = "failed"
                else:
                    try:
                        ip_int = int(ipaddress.IPv4Address(r["ip"]))
                    except ValueError:
                        status = "failed"
                        reasons.append("adopted with an invalid address %r" % r["ip"])
                if ip_int is not None and ip_int in taken:
                    status = "failed"
                    reasons.append("address %s was also held by %r in the original registry" % (r["ip"], taken[ip_int]))
                    ip_int = None
                elif ip_int is not None:
                    taken[ip_int] = r["label"]
                if not is_valid_label(r["label"]):
                    status = "failed"
                    reasons.insert(0, "label %r is not a valid fenrir.fleet label (1-56 characters of a-z, 0-9 and "
                                      "'-'); the node can only be decommissioned" % (r["label"],))
            legacy = {k: r[k] for k in ("encryption_key", "seed_encrypted") if r[k] is not None}
            secrets = self._encrypt({"legacy": _jsonable(legacy)}) if legacy else None
            record = dict(
                label=r["label"], server_id=r["server_id"] or container_name(r["label"]),
                provider=r["provider"] or "docker", location=r["location"], ip=r["ip"], ip_int=ip_int,
                node_id=r["node_id"], container_id=None, nonce=r["nonce"], status=status,
                reason="; ".join(reasons) or None, secrets=secrets,
                created_at=r["created_at"] if r["created_at"] is not None else now, updated_at=now,
                last_seen=r["last_seen"], report_received_at=r["report_received_at"],
            )
            self._insert(record)
            self._audit("adopt", record["label"], None, self.get_row(record["label"]))
        self.conn.execute("DROP TABLE fleet_nodes")

    # -- secrets
    def _key_for(self, create):
        if self._key is None:
            key = load_or_create_key(self.key_file, create=create and not self.check_mode)
            if key is None and create:
                from cryptography.fernet import Fernet
                key = Fernet.generate_key()  # check mode: a throwaway key, nothing is kept
            self._key = key
        return self._key

    def _encrypt(self, data):
        return _fernet(self._key_for(create=True)).encrypt(_canonical(data).encode("utf-8"))

    def _decrypt(self, token, label):
        key = self._key_for(create=False)
        if key is None:
            raise RegistryError("the registry key %s is missing; the node's secrets cannot be read" % self.key_file,
                                label=label, field="key_file")
        from cryptography.fernet import InvalidToken
        try:
            return json.loads(_fernet(key).decrypt(token))
        except InvalidToken:
            raise RegistryError("secrets do not decrypt with %s (wrong key or tampered row)" % self.key_file,
                                label=label, field="key_file")

    def get_seed(self, label):
        row = self.get_row(label)
        if row is None or not row["secrets"]:
            return None
        seed = self._decrypt(row["secrets"], label).get("seed")
        return base64.b64decode(seed) if seed else None

    # -- reads
    def get_row(self, label):
        return self.conn.execute("SELECT * FROM nodes WHERE label = ?", (label,)).fetchone()

    def get(self, label):
        row = self.get_row(label)
        return public(row) if row is not None else None

    def all(self, include_destroyed=True):
        sql = "SELECT * FROM nodes"
        if not include_destroyed:
            sql += " WHERE status != 'destroyed'"
        return [public(r) for r in self.conn.execute(sql + " ORDER BY ip_int IS NULL, ip_int, label")]

    def holder_of(self, ip_int):
        row = self.conn.execute("SELECT label FROM nodes WHERE ip_int = ?", (ip_int,)).fetchone()
        return row["label"] if row else None

    # -- addresses held: maximal runs of consecutive held addresses (held_runs)
    def next_free(self, pool):
        """The lowest address of the pool's range that no record holds, or None when all are held.

        Held means any record's ``ip_int``: addresses pinned inside the range and addresses taken from an
        overlapping pool count too.  (:meth:`ensure` gives a pinned address, else the node's previous address
        when it is in the pool and free, else this one.)  The cost is two index probes however full the
        registry is: ``held_runs`` keeps the held addresses as runs, so the run holding the pool's start ends
        just before the answer.  The answer is checked against the records; should the runs be out of step
        with them (edited behind the registry's back), they are rebuilt from the records first.
        """
        lo, hi = int(pool.start), int(pool.end)
        for attempt in (1, 2):
            run = self._run_at(lo)
            candidate = run[1] + 1 if run is not None and run[1] >= lo else lo
            if candidate > hi:
                held = self.conn.execute("SELECT count(*) FROM nodes WHERE ip_int BETWEEN ? AND ?",
                                         (lo, hi)).fetchone()[0]
                if held >= hi - lo + 1 or attempt == 2:
                    return None
            elif self.holder_of(candidate) is None:
                return candidate
            self._rebuild_runs()
        return None

    def _run_at(self, ip_int):
        """The run starting at or before ``ip_int`` that starts last: (run_start, run_end) or None."""
        row = self.conn.execute("SELECT run_start, run_end FROM held_runs WHERE run_start <= ?"
                                " ORDER BY run_start DESC LIMIT 1", (ip_int,)).fetchone()
        return (row[0], row[1]) if row is not None else None

    def _hold(self, ip_int):
        """``ip_int`` became held (the record is already written): merge it into the runs."""
        left = self._run_at(ip_int)
        if left is not None and left[1] >= ip_int:
            return self._rebuild_runs()  # already listed as held: out of step with the records
        right = self.conn.execute("SELECT run_end FROM held_runs WHERE run_start = ?", (ip_int + 1,)).fetchone()
        end = ip_int
        if right is not None:
            end = right[0]
            self.conn.execute("DELETE FROM held_runs WHERE run_start = ?", (ip_int + 1,))
        if left is not None and left[1] == ip_int - 1:
            self.conn.execute("UPDATE held_runs SET run_end = ? WHERE run_start = ?", (end, left[0]))
        else:
            self.conn.execute("INSERT INTO held_runs (run_start, run_end) VALUES (?, ?)", (ip_int, end))

    def _release(self, ip_int):
        """``ip_int`` is no longer held (the record is already written): cut it out of its run."""
        run = self._run_at(ip_int)
        if run is None or run[1] < ip_int:
            return self._rebuild_runs()  # not listed as held: out of step with the records
        start, end = run
        if start == ip_int:
            self.conn.execute("DELETE FROM held_runs WHERE run_start = ?", (start,))
        else:
            self.conn.execute("UPDATE held_runs SET run_end = ? WHERE run_start = ?", (ip_int - 1, start))
        if end > ip_int:
            self.conn.execute("INSERT INTO held_runs (run_start, run_end) VALUES (?, ?)", (ip_int + 1, end))

    def _rebuild_runs(self):
        held = [r[0] for r in self.conn.execute("SELECT ip_int FROM nodes WHERE ip_int IS NOT NULL ORDER BY ip_int")]
        self.conn.execute("DELETE FROM held_runs")
        self.conn.executemany("INSERT INTO held_runs (run_start, run_end) VALUES (?, ?)", list(_runs_of(held)))

    def rebuild_address_index(self):
        """Rebuild ``held_runs`` from the records (after :meth:`verify` found it edited).  Call inside
        transaction(); returns whether it differed."""
        before = self.conn.execute("SELECT run_start, run_end FROM held_runs ORDER BY run_start").fetchall()
        self._rebuild_runs()
        return [tuple(r) for r in before] != [tuple(r) for r in self.conn.execute(
            "SELECT run_start, run_end FROM held_runs ORDER BY run_start")]

    # -- writes (call inside transaction())
    def _insert(self, record):
        self.conn.execute("INSERT INTO nodes (%s) VALUES (%s)" % (", ".join(COLUMNS), ", ".join("?" * len(COLUMNS))),
                          tuple(record.get(c) for c in COLUMNS))
        if record.get("ip_int") is not None:
            self._hold(record["ip_int"])

    def _update(self, label, changes):
        sets = ", ".join("%s = ?" % k for k in changes)
        self.conn.execute("UPDATE nodes SET %s WHERE label = ?" % sets, tuple(changes.values()) + (label,))

    def _audit(self, action, label, before, after):
        last = self.conn.execute("SELECT height, hash FROM audit ORDER BY height DESC LIMIT 1").fetchone()
        height = (last["height"] + 1) if last else 1
        prev_hash = last["hash"] if last else GENESIS_HASH
        ts = time.time()
        before_v, after_v = _as_view(before), _as_view(after)
        digest = entry_hash(height, ts, self.actor, action, label, before_v, after_v, prev_hash)
        self.conn.execute(
            "INSERT INTO audit (height, ts, actor, action, label, before, after, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (height, ts, self.actor, action, label, _canonical(before_v) if before_v is not None else None,
             _canonical(after_v) if after_v is not None else None, prev_hash, digest))

    def _latest_entry(self, label):
        """(height, after) of the newest audit entry of ``label``, or (None, None): one index probe."""
        row = self.conn.execute("SELECT height, after FROM audit WHERE label = ? ORDER BY height DESC LIMIT 1",
                                (label,)).fetchone()
        if row is None:
            return None, None
        return row["height"], (json.loads(row["after"]) if row["after"] is not None else None)

    def _check_untampered(self, label, row):
        """Refuse to write a record that is no longer what its newest audit entry says.

        Recording such a row as the ``before`` of a new entry would make an edit made behind the registry's
        back look like history.  Costs one index probe and one small JSON document per write.
        """
        height, recorded = self._latest_entry(label)
        current = audit_view(row)
        if recorded == current:
            return
        if height is None:
            what = "it has no entry in the audit trail (added outside the registry)"
        elif current is None:
            what = "it is missing, though audit entry %d records it (deleted outside the registry)" % height
        elif recorded is None:
            what = "audit entry %d records it as removed" % height
        else:
            what = "it differs from audit entry %d in %s" % (height, ", ".join(_differing(recorded, current)))
        raise RegistryError("the record was changed outside the registry: %s. Nothing was written; run the audit "
                            "playbook (playbooks/audit.yml) to see the change, then restore the record or have "
                            "it accepted" % what, label=label)

    def _change(self, action, label, changes, checked=False):
        before = self.get_row(label)
        if not checked:
            self._check_untampered(label, before)
        changes = {k: v for k, v in changes.items() if before[k] != v}
        if not changes:
            return False
        if "status" in changes or "ip_int" in changes:
            status = changes.get("status", before["status"])
            if changes.get("ip_int", before["ip_int"]) is None and status not in LIVE_WITHOUT_ADDRESS:
                raise RegistryError(
                    "holds no address (it is %s, e.g. decommissioned meanwhile), so it cannot become %s; only "
                    "fenrir.fleet.fleet_node (allocation) brings it back, with an address"
                    % (before["status"], status), label=label, field="status")
        changes["updated_at"] = time.time()
        self._update(label, changes)
        if "ip_int" in changes:
            if before["ip_int"] is not None:
                self._release(before["ip_int"])
            if changes["ip_int"] is not None:
                self._hold(changes["ip_int"])
        self._audit(action, label, before, self.get_row(label))
        return True

    def ensure(self, spec, pool):
        """Make ``spec['label']`` a node holding an address; returns (before, after, changed), public views.

        spec keys: label (required), ip (pinned, optional), server_id, provider, location, nonce.
        An existing active node keeps its address; a destroyed or failed one without an address
        gets its previous address back when it is in the pool and free, else :meth:`next_free`.
        """
        label = spec["label"]
        row = self.get_row(label)
        self._check_untampered(label, row)
        pinned = pool.check_pinned(spec["ip"], label) if spec.get("ip") else None
        now = time.time()
        fields = {k: spec[k] for k in ("server_id", "provider", "location", "nonce") if spec.get(k) is not None}
        if row is not None and row["ip_int"] is not None:
            current = ipaddress.IPv4Address(row["ip_int"])
            if current not in pool.subnet:
                raise RegistryError("holds %s, outside the subnet %s; decommission it before moving it"
                                    % (current, pool.subnet), label=label, field="ip")
            if pinned is not None and pinned != current:
                raise RegistryError("pinned ip %s differs from the address %s the node already holds; "
                                    "decommission the node to move it" % (pinned, current), label=label, field="ip")
            changes = dict(fields)
            if row["status"] == "destroyed":  # pragma: no cover - excluded by the CHECK constraint
                changes["status"] = "provisioning"
            changed = self._change("update", label, changes, checked=True)
            return public(row), public(self.get_row(label)), changed

        # Needs an address.
        if pinned is not None:
            holder = self.holder_of(int(pinned))
            if holder is not None:
                raise RegistryError("pinned ip %s is already held by node %r" % (pinned, holder),
                                    label=label, field="ip")
            ip_int = int(pinned)
        else:
            ip_int = None
            if row is not None and row["ip"]:
                previous = ipaddress.IPv4Address(row["ip"])
                if pool.start <= previous <= pool.end and self.holder_of(int(previous)) is None:
                    ip_int = int(previous)
            if ip_int is None:
                ip_int = self.next_free(pool)
            if ip_int is None:
                raise RegistryError("address pool %s-%s is exhausted (%d addresses, all held)"
                                    % (pool.start, pool.end, pool.size), label=label, field="ip")
        ip = str(ipaddress.IPv4Address(ip_int))
        if row is None:
            record = dict(label=label, server_id=spec.get("server_id") or container_name(label),
                          provider=spec.get("provider") or "docker", location=spec.get("location"),
                          ip=ip, ip_int=ip_int, node_id=None, container_id=None, nonce=spec.get("nonce"),
                          status="provisioning", reason=None, secrets=None, created_at=now, updated_at=now,
                          last_seen=None, report_received_at=None)
            self._insert(record)
            self._audit("allocate", label, None, self.get_row(label))
            return None, public(self.get_row(label)), True
        changes = dict(fields, ip=ip, ip_int=ip_int, status="provisioning", reason=None, container_id=None)
        self._change("allocate", label, changes, checked=True)
        return public(row), public(self.get_row(label)), True

    def ensure_identity(self, label, seed=None, generate=None):
        """Keep a node's Ed25519 seed (encrypted).  A given seed replaces the stored one;
        without one, the stored seed is kept, or ``generate()`` makes a fresh one.
        Returns (seed, changed)."""
        row = self.get_row(label)
        if row is None:
            raise RegistryError("is not in the registry", label=label)
        self._check_untampered(label, row)
        secrets = self._decrypt(row["secrets"], label) if row["secrets"] else {}
        stored = base64.b64decode(secrets["seed"]) if secrets.get("seed") else None
        if seed is None:
            if stored is not None:
                return stored, False
            seed = generate()
        elif stored is not None and hmac.compare_digest(stored, seed):
            return stored, False
        secrets["seed"] = base64.b64encode(seed).decode("ascii")
        before = row
        self._update(label, dict(secrets=self._encrypt(secrets), updated_at=time.time()))
        self._audit("identity", label, before, self.get_row(label))
        return seed, True

    def set_fields(self, label, action="update", **changes):
        """Change fields of an existing record.  A record without an address (destroyed, or failed and
        released) may only be ``failed``: giving it a live status is refused (field 'status')."""
        unknown = set(changes) - set(MUTABLE_FIELDS)
        if unknown:
            raise RegistryError("unknown fields %s" % ", ".join(sorted(unknown)), label=label)
        if "status" in changes and changes["status"] not in STATUSES:
            raise RegistryError("status %r is not one of %s" % (changes["status"], ", ".join(STATUSES)),
                                label=label, field="status")
        if changes.get("status") == "destroyed":
            raise RegistryError("use destroy() to mark a node destroyed", label=label, field="status")
        if self.get_row(label) is None:
            raise RegistryError("is not in the registry", label=label)
        return self._change(action, label, changes)

    def destroy(self, label, reason=None):
        """Mark a node destroyed and free its address.  Returns (before, after, changed)."""
        row = self.get_row(label)
        if row is None:
            return None, None, False
        if row["status"] == "destroyed" and reason is None:
            reason = row["reason"]  # destroying again without a reason is no change
        changed = self._change("destroy", label, dict(status="destroyed", ip_int=None, container_id=None,
                                                      reason=reason))
        return public(row), public(self.get_row(label)), changed

    def fail(self, label, reason, release=False, container_removed=True):
        """Mark a node failed.  ``release`` frees its address; ``container_removed=False`` keeps the
        recorded container id (the caller left the container in place)."""
        if self.get_row(label) is None:
            raise RegistryError("is not in the registry", label=label)
        changes = dict(status="failed", reason=reason)
        if container_removed:
            changes["container_id"] = None
        if release:
            changes["ip_int"] = None
        return self._change("fail", label, changes)

    def accept_external_change(self, label):
        """Take ``label``'s record as it is now after a change made outside the registry (found by
        :meth:`verify`, refused by every write): appends an ``accept`` entry whose ``before`` is what the
        trail recorded and ``after`` the record as found, by this registry's actor.  Call inside
        transaction(); returns whether there was anything to accept."""
        height, recorded = self._latest_entry(label)
        row = self.get_row(label)
        if recorded == audit_view(row):
            return False
        if (recorded or {}).get("ip_int") != (row["ip_int"] if row is not None else None):
            self._rebuild_runs()
        self._audit("accept", label, recorded, row)
        return True

    # -- the audit trail
    def audit_entries(self):
        return [dict(r) for r in self.conn.execute("SELECT * FROM audit ORDER BY height")]

    def verify(self):
        """Check the hash chain, that every node's entries follow on from each other, that the newest entry
        of every node matches its row, and that the index of held addresses matches the rows.

        Returns dict(ok, entries, problem, height, label) where problem names the first entry or row that
        does not match, or is None.
        """
        # One read transaction: the trail and the rows are compared as of the same moment.
        self.conn.execute("BEGIN")
        try:
            return self._verify()
        finally:
            self.conn.execute("ROLLBACK")

    def _verify(self):
        prev = GENESIS_HASH
        expected_height = 1
        latest = {}
        count = 0
        for e in self.conn.execute("SELECT * FROM audit ORDER BY height"):
            count += 1
            before = json.loads(e["before"]) if e["before"] is not None else None
            after = json.loads(e["after"]) if e["after"] is not None else None
            where = "audit entry %d (%s %s)" % (e["height"], e["action"], e["label"])
            if e["height"] != expected_height:
                return _problem(count, "%s: expected height %d; an entry is missing" % (where, expected_height),
                                e["height"], e["label"])
            if e["prev_hash"] != prev:
                return _problem(count, "%s: prev_hash does not match the hash of entry %d"
                                % (where, e["height"] - 1), e["height"], e["label"])
            digest = entry_hash(e["height"], e["ts"], e["actor"], e["action"], e["label"], before, after,
                                e["prev_hash"])
            if digest != e["hash"]:
                return _problem(count, "%s: content does not match its hash" % where, e["height"], e["label"])
            prev = e["hash"]
            expected_height += 1
            if e["label"] is not None:
                # Each entry of a node starts where its previous entry ended (the first from nothing).
                previous = latest.get(e["label"])
                if previous is None and before is not None:
                    return _problem(count, "%s: first entry of node %r, but its 'before' is not empty: the record "
                                    "existed without a trail (added behind the registry's back) or its earlier "
                                    "entries were removed" % (where, e["label"]), e["height"], e["label"])
                if previous is not None and before != previous[1]:
                    fields = _differing(previous[1], before)
                    return _problem(count, "%s: its 'before' differs from audit entry %d in %s: node %r was "
                                    "changed behind the registry's back before this write"
                                    % (where, previous[0], ", ".join(fields), e["label"]), e["height"], e["label"])
                latest[e["label"]] = (e["height"], after)
        for row in self.conn.execute("SELECT * FROM nodes ORDER BY label"):
            view = audit_view(row)
            if row["label"] not in latest:
                return _problem(count, "node %r is in the registry but not in the audit trail" % row["label"],
                                None, row["label"])
            height, after = latest.pop(row["label"])
            if after != view:
                fields = _differing(after, view)
                return _problem(count, "node %r differs from audit entry %d in %s: changed behind the "
                                "registry's back" % (row["label"], height, ", ".join(fields)), height, row["label"])
        for label, (height, after) in sorted(latest.items()):
            if after is not None:
                return _problem(count, "node %r of audit entry %d is missing from the registry"
                                % (label, height), height, label)
        problem = self._runs_problem()
        if problem is not None:
            return _problem(count, problem, None, None)
        return dict(ok=True, entries=count, problem=None, height=None, label=None)

    def _runs_problem(self):
        held = _runs_of(r[0] for r in self.conn.execute(
            "SELECT ip_int FROM nodes WHERE ip_int IS NOT NULL ORDER BY ip_int"))
        recorded = ((r[0], r[1]) for r in self.conn.execute(
            "SELECT run_start, run_end FROM held_runs ORDER BY run_start"))
        for want, have in itertools.zip_longest(held, recorded):
            if want != have:
                return ("the index of held addresses (held_runs) does not match the records: it lists %s where the "
                        "records hold %s. It was changed behind the registry's back; allocation would skip free "
                        "addresses or try held ones" % (_span(have), _span(want)))
        return None


def _runs_of(sorted_ints):
    """Maximal runs (first, last) of consecutive integers in an ascending sequence."""
    start = last = None
    for n in sorted_ints:
        if last is not None and n == last + 1:
            last = n
            continue
        if start is not None:
            yield start, last
        start = last = n
    if start is not None:
        yield start, last


def _span(run):
    if run is None:
        return "nothing more"
    first, last = (str(ipaddress.IPv4Address(n)) for n in run)
    return first if first == last else "%s-%s" % (first, last)


def _differing(a, b):
    a, b = a or {}, b or {}
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _problem(count, message, height, label):
    return dict(ok=False, entries=count, problem=message, height=height, label=label)


def _as_view(row):
    if row is None:
        return None
    if isinstance(row, dict) and "secrets_sha256" in row:
        return row
    return audit_view(row)


def _jsonable(data):
    out = {}
    for k, v in data.items():
        out[k] = base64.b64encode(v).decode("ascii") if isinstance(v, (bytes, bytearray, memoryview)) else v
    return out


def public(row):
    """A node record as modules return it: no secrets, no internal columns."""
    view = {c: row[c] for c in PUBLIC_COLUMNS}
    view["has_identity"] = bool(row["secrets"])
    view["address_held"] = row["ip_int"] is not None
    return view
