# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet registry: fleet.db (SQLite), address allocation, secrets and the audit chain.

Everything that changes the registry goes through :class:`Registry` inside one
``BEGIN IMMEDIATE`` transaction, so any number of processes can allocate against
one file at once: SQLite serialises the writers, the UNIQUE index on ``ip_int``
makes a shared address impossible, and ``label`` as primary key makes a label
one node.  Every change appends an audit entry chained by SHA-256 in the same
transaction, so the trail and the data can never disagree unless someone edits
the file behind the registry's back -- which :meth:`Registry.verify` reports.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import sqlite3
import time

SCHEMA_VERSION = 3  # 1: the original skill's fleet_nodes; 2: nodes + audit; 3: + pool_cursor
STATUSES = ("provisioning", "running", "online", "failed", "destroyed")
ACTIVE_STATUSES = ("provisioning", "running", "online", "failed")
DEFAULT_SUBNET = "172.21.0.0/24"
DEFAULT_GATEWAY = "172.21.0.1"
DEFAULT_POOL_START = "172.21.0.10"
DEFAULT_POOL_END = "172.21.0.249"
GENESIS_HASH = "0" * 64

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
CREATE TABLE IF NOT EXISTS pool_cursor (
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    lowest_free INTEGER NOT NULL,
    PRIMARY KEY (lo, hi)
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
"""


class RegistryError(Exception):
    """Bad input or a refused change.  ``label`` and ``field`` say where."""

    def __init__(self, message, label=None, field=None):
        self.label = label
        self.field = field
        where = []
        if label is not None:
            where.append("node %r" % label)
        if field is not None:
            where.append("field %r" % field)
        super().__init__("%s: %s" % (", ".join(where), message) if where else message)
        self.bare_message = message


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
    """The registry's secret key (Fernet), kept in a 0600 file beside fleet.db."""
    try:
        with open(path, "rb") as fh:
            key = fh.read().strip()
    except FileNotFoundError:
        if not create:
            return None
        from cryptography.fernet import Fernet
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, key + b"\n")
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return key
    except OSError as exc:
        raise RegistryError("cannot read registry key %s: %s" % (path, exc), field="key_file")
    try:
        _fernet(key)
    except ValueError:
        raise RegistryError("registry key %s is not a valid key" % path, field="key_file")
    return key


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
    """fleet.db.  Use as a context manager; every write is one immediate transaction."""

    def __init__(self, path, key_file=None, actor=None, check_mode=False, busy_timeout=60.0):
        self.path = os.path.abspath(path)
        self.key_file = key_file or os.path.join(os.path.dirname(self.path), "fleet.key")
        self.actor = actor or default_actor()
        self.check_mode = check_mode
        self._key = None
        self._scratch = False
        exists = os.path.exists(self.path)
        if check_mode and not exists:
            # Nothing may be written in check mode: plan against an empty, in-memory registry.
            self.conn = sqlite3.connect(":memory:", isolation_level=None)
            self._scratch = True
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
            if check_mode and not self._scratch and self.schema_version != SCHEMA_VERSION:
                # Check mode against a registry that needs migrating: plan on a scratch copy.
                scratch = sqlite3.connect(":memory:", isolation_level=None)
                self.conn.backup(scratch)
                self.conn.close()
                self.conn = scratch
                self.conn.row_factory = sqlite3.Row
                self._scratch = True
            if not check_mode and self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                # Switching needs the file to itself and SQLite does not wait for that (no busy
                # handler): processes opening a fresh registry at once retry until it is done.
                deadline = time.time() + busy_timeout
                while True:
                    try:
                        self.conn.execute("PRAGMA journal_mode = WAL")
                        break
                    except sqlite3.OperationalError as exc:
                        if "locked" not in str(exc) or time.time() > deadline:
                            raise
                        time.sleep(0.01)
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA secure_delete = ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise RegistryError("%s is not a usable fleet registry: %s" % (self.path, exc), field="db")

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
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise RegistryError("%s has schema version %d; this collection knows up to %d"
                                % (self.path, version, SCHEMA_VERSION), field="db")
        adopted = False
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
                    adopted = True
                self.conn.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
            self._end(True)
        except BaseException:
            self._end(False)
            raise
        if adopted and not self._scratch:
            # The old table's pages, zeroed by secure_delete, sit in the WAL: write them over the
            # plain-text originals in fleet.db now, not at some later checkpoint.
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _adopt_original(self):
        """Take over a fleet.db written by the original fleet-provision-docker-lite skill (schema 1).

        Every row is kept; addresses of nodes that are not destroyed stay reserved (a second row
        holding an address already taken -- the original allocator's race -- is marked failed);
        the plain-text secret columns are moved into the encrypted ``secrets`` blob and the old
        table is dropped with secure_delete on, so the clear text does not linger in free pages.
        """
        cols = {r[1] for r in self.conn.execute("PRAGMA table_info(fleet_nodes)")}

        def col(name):
            return name if name in cols else "NULL"

        rows = self.conn.execute(
            "SELECT label, %s AS server_id, %s AS provider, %s AS location, %s AS ip, %s AS node_id,"
            " %s AS encryption_key, %s AS seed_encrypted, %s AS nonce, %s AS status, %s AS created_at,"
            " %s AS last_seen, %s AS report_received_at FROM fleet_nodes ORDER BY %s, label"
            % tuple(col(c) for c in ("server_id", "provider", "location", "ip", "node_id", "encryption_key",
                                     "seed_encrypted", "nonce", "status", "created_at", "last_seen",
                                     "report_received_at", "created_at"))
        ).fetchall()
        now = time.time()
        taken = {}
        for r in rows:
            status = r["status"] if r["status"] in STATUSES else "provisioning"
            reason = None
            ip_int = None
            if r["ip"] and status != "destroyed":
                try:
                    ip_int = int(ipaddress.IPv4Address(r["ip"]))
                except ValueError:
                    status, reason = "failed", "adopted with an invalid address %r" % r["ip"]
                if ip_int is not None and ip_int in taken:
                    status = "failed"
                    reason = "address %s was also held by %r in the original registry" % (r["ip"], taken[ip_int])
                    ip_int = None
                elif ip_int is not None:
                    taken[ip_int] = r["label"]
            legacy = {k: r[k] for k in ("encryption_key", "seed_encrypted") if r[k] is not None}
            secrets = self._encrypt({"legacy": _jsonable(legacy)}) if legacy else None
            record = dict(
                label=r["label"], server_id=r["server_id"] or "fenrir-%s" % r["label"],
                provider=r["provider"] or "docker", location=r["location"], ip=r["ip"], ip_int=ip_int,
                node_id=r["node_id"], container_id=None, nonce=r["nonce"], status=status, reason=reason,
                secrets=secrets, created_at=r["created_at"] or now, updated_at=now,
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

    def next_free(self, pool):
        """The lowest free address of the pool, in O(log n) however full the registry is.

        ``pool_cursor`` remembers, per pool, an address below which every address is held
        (moved up on allocation, down when an address is freed).  If that address is free it is
        the answer (one index probe); otherwise SQLite walks the ip_int index from there to the
        first gap and stops.  Python sees one row; no query reads every record.
        """
        lo, hi = int(pool.start), int(pool.end)
        row = self.conn.execute("SELECT lowest_free FROM pool_cursor WHERE lo = ? AND hi = ?", (lo, hi)).fetchone()
        start = max(lo, row[0]) if row else lo
        for origin in ((start, lo) if start > lo else (lo,)):
            if origin <= hi and not self.conn.execute("SELECT 1 FROM nodes WHERE ip_int = ?", (origin,)).fetchone():
                return origin
            found = self.conn.execute(
                """
                SELECT n.ip_int + 1 FROM nodes n
                WHERE n.ip_int >= :origin AND n.ip_int < :hi
                  AND NOT EXISTS (SELECT 1 FROM nodes m WHERE m.ip_int = n.ip_int + 1)
                ORDER BY n.ip_int LIMIT 1
                """, dict(origin=origin, hi=hi)).fetchone()
            if found:
                return found[0]
            # Nothing free above the cursor: look again from the pool's start (a stale cursor).
        return None

    def _cursor_allocated(self, pool, ip_int):
        lo, hi = int(pool.start), int(pool.end)
        if lo <= ip_int <= hi:
            # next_free() returned the lowest free address, so everything up to it is now held.
            self.conn.execute(
                "INSERT INTO pool_cursor (lo, hi, lowest_free) VALUES (?, ?, ?)"
                " ON CONFLICT (lo, hi) DO UPDATE SET lowest_free = excluded.lowest_free", (lo, hi, ip_int + 1))

    def _cursor_freed(self, ip_int):
        self.conn.execute("UPDATE pool_cursor SET lowest_free = ? WHERE lo <= ? AND hi >= ? AND lowest_free > ?",
                          (ip_int, ip_int, ip_int, ip_int))

    # -- writes (call inside transaction())
    def _insert(self, record):
        self.conn.execute("INSERT INTO nodes (%s) VALUES (%s)" % (", ".join(COLUMNS), ", ".join("?" * len(COLUMNS))),
                          tuple(record.get(c) for c in COLUMNS))

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

    def _change(self, action, label, changes):
        before = self.get_row(label)
        changes = {k: v for k, v in changes.items() if before[k] != v}
        if not changes:
            return False
        changes["updated_at"] = time.time()
        self._update(label, changes)
        if "ip_int" in changes and before["ip_int"] is not None and changes["ip_int"] != before["ip_int"]:
            self._cursor_freed(before["ip_int"])
        self._audit(action, label, before, self.get_row(label))
        return True

    def ensure(self, spec, pool):
        """Make ``spec['label']`` a node holding an address; returns (before, after, changed), public views.

        spec keys: label (required), ip (pinned, optional), server_id, provider, location, nonce.
        An existing active node keeps its address; a destroyed or failed one without an address
        gets its previous address back when free, else the next free one.
        """
        label = spec["label"]
        row = self.get_row(label)
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
            changed = self._change("update", label, changes)
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
                if ip_int is not None:
                    self._cursor_allocated(pool, ip_int)
            if ip_int is None:
                raise RegistryError("address pool %s-%s is exhausted (%d addresses, all held)"
                                    % (pool.start, pool.end, pool.size), label=label, field="ip")
        ip = str(ipaddress.IPv4Address(ip_int))
        if row is None:
            record = dict(label=label, server_id=spec.get("server_id") or "fenrir-%s" % label,
                          provider=spec.get("provider") or "docker", location=spec.get("location"),
                          ip=ip, ip_int=ip_int, node_id=None, container_id=None, nonce=spec.get("nonce"),
                          status="provisioning", reason=None, secrets=None, created_at=now, updated_at=now,
                          last_seen=None, report_received_at=None)
            self._insert(record)
            self._audit("allocate", label, None, self.get_row(label))
            return None, public(self.get_row(label)), True
        changes = dict(fields, ip=ip, ip_int=ip_int, status="provisioning", reason=None, container_id=None)
        self._change("allocate", label, changes)
        return public(row), public(self.get_row(label)), True

    def ensure_identity(self, label, seed=None, generate=None):
        """Keep a node's Ed25519 seed (encrypted).  A given seed replaces the stored one;
        without one, the stored seed is kept, or ``generate()`` makes a fresh one.
        Returns (seed, changed)."""
        row = self.get_row(label)
        if row is None:
            raise RegistryError("is not in the registry", label=label)
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

    def fail(self, label, reason, release=False):
        if self.get_row(label) is None:
            raise RegistryError("is not in the registry", label=label)
        changes = dict(status="failed", reason=reason, container_id=None)
        if release:
            changes["ip_int"] = None
        return self._change("fail", label, changes)

    # -- the audit trail
    def audit_entries(self):
        return [dict(r) for r in self.conn.execute("SELECT * FROM audit ORDER BY height")]

    def verify(self):
        """Check the hash chain and that the newest entry of every node matches its row.

        Returns dict(ok, entries, problem) where problem names the first entry or row that
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
                latest[e["label"]] = (e["height"], after)
        for row in self.conn.execute("SELECT * FROM nodes ORDER BY label"):
            view = audit_view(row)
            if row["label"] not in latest:
                return _problem(count, "node %r is in the registry but not in the audit trail" % row["label"],
                                None, row["label"])
            height, after = latest.pop(row["label"])
            if after != view:
                fields = sorted(k for k in set(view) | set(after or {}) if (after or {}).get(k) != view.get(k))
                return _problem(count, "node %r differs from audit entry %d in %s: changed behind the "
                                "registry's back" % (row["label"], height, ", ".join(fields)), height, row["label"])
        for label, (height, after) in sorted(latest.items()):
            if after is not None:
                return _problem(count, "node %r of audit entry %d is missing from the registry"
                                % (label, height), height, label)
        return dict(ok=True, entries=count, problem=None, height=None, label=None)


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
