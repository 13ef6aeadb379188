# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry: one write transaction at a time, every change audited, over either store.

Everything that changes the registry goes through :class:`Registry` inside one write transaction
(:meth:`Registry.transaction`), so any number of processes can allocate against one registry at once: the
store serialises the writers (SQLite ``BEGIN IMMEDIATE``, PostgreSQL an advisory lock), UNIQUE columns make a
shared address impossible, and ``label`` as primary key makes a label one node.  Every change appends a keyed
audit entry in the same transaction (``audit.py``).  Before it changes a record, the registry checks that the
record is still what the newest audit entry of its label says (one index probe), so an edit made behind the
registry's back is refused rather than recorded as history.

Check mode plans on a private in-memory SQLite copy of the registry (of the file, or of a PostgreSQL snapshot):
it never takes the registry's write lock and never writes the registry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import time

from ansible_collections.fenrir.fleet.plugins.module_utils.naming import container_name
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import audit as chain
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.allocation import HeldRuns
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import (
    FORMER_LOCATIONS, GENESIS_HASH, KINDS, LIVE_WITHOUT_ADDRESS, MUTABLE_FIELDS, NETWORK_MODES, SCHEMA_VERSION,
    SCRUB_PENDING, STATUSES, RegistryError, as_view, audit_view, canonical, clean_reason, default_actor,
    differing, public)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.keys import KeySource, Sealer, new_key
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import Location
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.placement import PlacementMixin
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.records import RecordsMixin
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.store import SQLiteStore


def open_store(location, busy_timeout=60.0):
    if location.backend == "postgresql":
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry.store_postgres import PostgresStore
        return PostgresStore(location, busy_timeout=busy_timeout)
    return SQLiteStore(location, busy_timeout=busy_timeout)


class _Tx:
    def __init__(self, registry):
        self.registry = registry

    def __enter__(self):
        self.registry._begin()
        return self.registry

    def __exit__(self, exc_type, exc, tb):
        registry = self.registry
        if exc is not None and isinstance(exc, registry.store.errors):
            registry._end(False)
            registry.store.fail(exc, "write")
        registry._end(exc_type is None)
        return False


class Registry(RecordsMixin, PlacementMixin):
    """The fleet registry at ``path``: a SQLite file, or a ``postgresql://`` DSN.  Use as a context manager.

    ``key_file``: where the secret key is (see ``keys.py`` for where it is looked for otherwise).  With
    ``check_mode`` the registry is a private in-memory copy (an empty registry when there is none yet):
    changes are planned there, each transaction sees the ones before it, and nothing reaches the registry.
    Copying takes no write lock, so a dry run neither waits for a real run nor holds one up.
    """

    def __init__(self, path, key_file=None, actor=None, check_mode=False, busy_timeout=60.0):
        self.where = Location(path)
        self.path = self.where.display  # what may be shown: the absolute path, or the DSN without password
        self.backend = self.where.backend
        self.keys = KeySource(self.where, key_file)
        self.key_file = self.keys.path
        self.actor = actor or default_actor()
        self.check_mode = check_mode
        self.busy_timeout = busy_timeout
        self._sealer = None
        self._audit_key = None
        self._in_tx = False
        self._tx_head = None
        self._scratch = bool(check_mode)
        self._copy_pending = False
        if check_mode and self.backend == "postgresql":
            # Read straight from the server (reads take no lock) until the first planned write: only then is one
            # snapshot copied into memory, so verifying or reading in check mode costs no copy.
            self.store = open_store(self.where, busy_timeout)
            self._copy_pending = True
        elif check_mode:
            self.store = SQLiteStore(self.where, busy_timeout=busy_timeout, memory=True)
            self._snapshot_into_scratch()
        else:
            self.store = open_store(self.where, busy_timeout)
        self.conn = self.store.conn
        self.runs = HeldRuns(self.store)
        try:
            self.store.setup()
            self._migrate()
        except self.store.errors as exc:
            self.close()
            self.store.fail(exc, "open it")
        except BaseException:
            self.close()
            raise

    def _snapshot_into_scratch(self):
        """Check mode on SQLite: the file as of now, read in one snapshot (a reader: no write lock)."""
        if not os.path.exists(self.where.target):
            return
        source = None
        try:
            source = open_store(self.where, self.busy_timeout)
            source.snapshot_into(self.store)
        except getattr(source, "errors", ()) as exc:
            self.store.close()
            source.fail(exc, "read it")
        except Exception:
            self.store.close()
            raise
        finally:
            if source is not None:
                source.close()

    def _copy_into_scratch(self):
        """Check mode on PostgreSQL, at the first planned write: one snapshot of the server (a REPEATABLE READ READ
        ONLY transaction: no lock a writer waits for) copied into a private in-memory SQLite registry."""
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry.transfer import copy_snapshot
        source, scratch = self.store, SQLiteStore(self.where, busy_timeout=self.busy_timeout, memory=True)
        try:
            copy_snapshot(source, scratch)
        except source.errors as exc:
            scratch.close()
            source.fail(exc, "read it")
        finally:
            source.close()
        scratch.setup()
        self.store, self.conn, self.runs = scratch, scratch.conn, HeldRuns(scratch)
        self._copy_pending = False

    # -- plumbing
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.store.close()
        except Exception:  # pragma: no cover - closing a broken connection
            pass

    def _begin(self):
        if self._in_tx:
            raise RegistryError("a registry transaction is already open (transactions do not nest)")
        if self._copy_pending:
            self._copy_into_scratch()
        try:
            self.store.begin_write()
        except self.store.errors as exc:
            self.store.fail(exc, "take the registry's write lock")
        self._in_tx = True
        self._tx_head = None
        if self._sealer is not None and not self._scratch:
            # The key this object loaded in an earlier transaction may have been rotated by another run since:
            # load it again (and check it) rather than seal anything with a key the registry no longer has.
            if self.store.get_meta("key_fingerprint") != self._sealer.fingerprint:
                self._sealer = self._audit_key = None

    def _end(self, ok):
        if not self._in_tx:
            return
        self._in_tx = False
        try:
            if ok:
                if self._tx_head is not None:
                    self.store.set_meta("audit_head", chain.anchor(self._audit_key, self._tx_head[0],
                                                                   self._tx_head[1], self._legacy()))
                self.store.commit()
            else:
                self.store.rollback()
        except self.store.errors as exc:
            try:
                self.store.rollback()
            except self.store.errors:
                pass
            self.store.fail(exc, "commit")
        finally:
            self._tx_head = None

    def transaction(self):
        return _Tx(self)

    def _auto(self):
        """A transaction unless one is open (for the host, tenant and secret API, callable either way)."""
        registry = self

        class _Maybe:
            def __enter__(self):
                self.tx = None if registry._in_tx else _Tx(registry)
                if self.tx is not None:
                    self.tx.__enter__()
                return registry

            def __exit__(self, exc_type, exc, tb):
                return self.tx.__exit__(exc_type, exc, tb) if self.tx is not None else False
        return _Maybe()

    @property
    def schema_version(self):
        return self.store.schema_version()

    def _tables(self):
        return self.store.tables()

    # -- schema, migration and adoption
    def _migrate(self):
        version = self.store.schema_version()
        if version > SCHEMA_VERSION:
            raise RegistryError("%s has schema version %d; this collection knows up to %d"
                                % (self.path, version, SCHEMA_VERSION), field="registry")
        if version < SCHEMA_VERSION:
            self._begin()
            try:
                version = self.store.schema_version()  # another process may have migrated meanwhile
                if version < SCHEMA_VERSION:
                    self._upgrade(version)
                self._end(True)
            except BaseException:
                self._end(False)
                raise
        if self.backend == "sqlite" and not self._scratch and self.store.get_meta(SCRUB_PENDING):
            from ansible_collections.fenrir.fleet.plugins.module_utils.registry.adoption import scrub
            scrub(self)

    def _upgrade(self, version):
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry import schema
        tables = self.store.tables()
        legacy_views = {}
        if "nodes" in tables:  # schema 2-4: the records as the unkeyed trail recorded them
            legacy_views = {r["label"]: audit_view(r) for r in self.store.all("SELECT * FROM nodes")}
        schema.upgrade_structure(self.store)
        if "fleet_nodes" in tables:
            from ansible_collections.fenrir.fleet.plugins.module_utils.registry.adoption import adopt_original
            adopt_original(self)
            if self.backend == "sqlite":
                self.store.set_meta(SCRUB_PENDING, "adopted at %r" % time.time())
        elif "nodes" in tables:
            self.runs.rebuild()  # schema 2 or 3 had no index of held addresses; 4's is checked again
        if "audit" in tables or legacy_views:
            self._rekey_legacy(version, legacy_views)
        self.store.set_schema_version(SCHEMA_VERSION)

    def _rekey_legacy(self, version, legacy_views):
        """Re-anchor an unkeyed (schema 2-4) chain: a keyed ``rekey`` entry naming how many entries came before it
        and the last one's hash; then each node's secrets sealed to it and a ``migrate`` entry per node (its
        record gained the schema-5 columns)."""
        last = self.store.one("SELECT height, hash FROM audit ORDER BY height DESC LIMIT 1")
        legacy = last["height"] if last else 0
        self.store.set_meta("legacy_entries", str(legacy))
        self._legacy_count = legacy
        sealer = self._sealer_for(create=True)
        self._audit("rekey", None, None, dict(
            legacy_entries=legacy, legacy_head=last["hash"] if last else GENESIS_HASH, from_schema=version,
            to_schema=SCHEMA_VERSION, key_fingerprint=sealer.fingerprint,
            note="entries 1-%d were chained by a public SHA-256; from here on every entry is keyed" % legacy
            if legacy else "no earlier entries"), kind="registry")
        for row in self.store.all("SELECT * FROM nodes ORDER BY label"):
            label = row["label"]
            if row["secrets"]:
                data = sealer.open("node", label, row["secrets"], legacy=True)
                self.store.execute("UPDATE nodes SET secrets = ? WHERE label = ?",
                                   (sealer.seal("node", label, data), label))
            self._audit("migrate", label, legacy_views.get(label), self.get_row(label))

    def _legacy(self):
        if getattr(self, "_legacy_count", None) is None:
            value = self.store.get_meta("legacy_entries")
            self._legacy_count = int(value) if value else 0
        return self._legacy_count

    # -- keys
    def _has_secrets(self):
        tables = self.store.tables()
        for kind, (table, _key, _cols, secret) in KINDS.items():
            if secret and table in tables and self.store.one(
                    "SELECT 1 AS x FROM %s WHERE %s IS NOT NULL LIMIT 1" % (table, secret)):
                return True
        return False

    def _sealer_for(self, create):
        """The registry key as a :class:`Sealer`, checked against the fingerprint the registry recorded.

        A key is made (in a key file) only for a registry that has none yet; in check mode a throwaway key
        plans for a registry that has none yet, and nothing is kept."""
        if self._sealer is not None:
            return self._sealer
        recorded = self.store.get_meta("key_fingerprint")
        keyed = recorded is not None or self._has_secrets()
        key = None
        if self.keys.given:
            key = self.keys.load(create=create and not keyed and not self.check_mode)
        if key is None:
            if self.check_mode and not keyed:
                key = new_key()
            elif keyed:
                raise RegistryError("the registry %s has secrets, but its key was not found: looked in %s. Give the "
                                    "registry's key there (restore it from a backup); a new key would not open them"
                                    % (self.path, self.keys.describe()), field="key_file")
            else:
                raise RegistryError("the registry %s needs a secret key and none was found: looked in %s"
                                    % (self.path, self.keys.describe()), field="key_file")
        sealer = Sealer(key, self.keys.where or "a throwaway check-mode key")
        if recorded is not None and recorded != sealer.fingerprint:
            from ansible_collections.fenrir.fleet.plugins.module_utils.registry.rotation import pending_hint
            raise RegistryError("the key from %s (fingerprint %s) is not the key of the registry %s (fingerprint %s); "
                                "nothing was written. Give the registry's own key%s"
                                % (self.keys.where, sealer.fingerprint, self.path, recorded,
                                   pending_hint(self.keys.path)), field="key_file")
        self._sealer = sealer
        return sealer

    def _audit_key_for_write(self):
        if self._audit_key is None:
            sealer = self._sealer_for(create=True)
            blob = self.store.get_meta("audit_key")
            if blob is None:
                key = os.urandom(32)
                self.store.set_meta("audit_key", sealer.seal("secret", "audit_key", dict(
                    key=base64.b64encode(key).decode("ascii"))).decode("ascii"))
                self.store.set_meta("key_fingerprint", sealer.fingerprint)
            else:
                key = base64.b64decode(sealer.open("secret", "audit_key", blob.encode("ascii"))["key"])
            self._audit_key = key
        return self._audit_key

    def _audit_key_for_read(self):
        if self._audit_key is None:
            blob = self.store.get_meta("audit_key")
            if blob is None:
                raise RegistryError("the registry %s has audit entries but no audit key: registry_meta was changed "
                                    "behind the registry's back" % self.path, field="registry")
            sealer = self._sealer_for(create=False)
            self._audit_key = base64.b64decode(sealer.open("secret", "audit_key", blob.encode("ascii"))["key"])
        return self._audit_key

    def key_fingerprint(self):
        """The fingerprint of the registry's key as recorded (None before it has one)."""
        return self.store.get_meta("key_fingerprint")

    def audit_head(self):
        """The newest audit entry (height, hash): keep it outside the registry to detect a rollback."""
        if "audit" not in self.store.tables():
            return dict(height=0, hash=GENESIS_HASH)
        row = self.store.one("SELECT height, hash FROM audit ORDER BY height DESC LIMIT 1")
        return dict(height=row["height"], hash=row["hash"]) if row else dict(height=0, hash=GENESIS_HASH)

    def entry_hash_at(self, height):
        """The hash of audit entry ``height``, or None when there is no such entry."""
        return self.store.scalar("SELECT hash FROM audit WHERE height = ?", (int(height),))

    def former_locations(self):
        """Where this registry was copied from (``copy_registry``), as those registries are shown: containers
        labelled for one of them are this registry's."""
        value = self.store.get_meta(FORMER_LOCATIONS)
        return json.loads(value) if value else []

    def _encrypt(self, data, label="", kind="node"):
        return self._sealer_for(create=True).seal(kind, label, data)

    def _decrypt(self, token, label, kind="node"):
        return self._sealer_for(create=False).open(kind, label, token)

    def rotate_key(self, new):
        """Re-encrypt every secret under the key ``new`` in one audited transaction (an entry per record and a
        ``rotate_key`` entry with both fingerprints).  Store ``new`` where the registry finds its key (e.g.
        :func:`write_key_file` with ``replace=True``) right after; the old key opens nothing any more.
        Returns the number of records re-encrypted."""
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry.keys import valid_key
        new = valid_key(new, "the new key")
        with self._auto():
            old = self._sealer_for(create=False)
            audit_key = self._audit_key_for_write()
            fresh = Sealer(new, "the new key")
            count = 0
            for kind, (table, keycol, _cols, secret) in KINDS.items():
                if not secret:
                    continue
                sql = "SELECT * FROM %s WHERE %s IS NOT NULL ORDER BY %s" % (table, secret, keycol)
                for row in self.store.all(sql):
                    self._check_untampered(row[keycol], row, kind)
                    data = old.open(kind, row[keycol], row[secret])
                    self._update_row(kind, row[keycol], {secret: fresh.seal(kind, row[keycol], data)})
                    self._audit("rekey", row[keycol], row, self._get(kind, row[keycol]), kind=kind)
                    count += 1
            self.store.set_meta("audit_key", fresh.seal("secret", "audit_key", dict(
                key=base64.b64encode(audit_key).decode("ascii"))).decode("ascii"))
            self.store.set_meta("key_fingerprint", fresh.fingerprint)
            self._audit("rotate_key", None, None, dict(previous_key_fingerprint=old.fingerprint,
                                                       key_fingerprint=fresh.fingerprint, records=count),
                        kind="registry")
            self._sealer = fresh
        return count

    # -- reads
    def get_row(self, label):
        return self.store.one("SELECT * FROM nodes WHERE label = ?", (label,))

    def get(self, label):
        row = self.get_row(label)
        return public(row) if row is not None else None

    def all(self, include_destroyed=True):
        sql = "SELECT * FROM nodes"
        if not include_destroyed:
            sql += " WHERE status != 'destroyed'"
        return [public(r) for r in self.store.all(sql + " ORDER BY ip_int IS NULL, ip_int, label")]

    def get_seed(self, label):
        return self.get_secret(label, "seed")

    def get_secret(self, label, name):
        """A node's secret (``seed`` as bytes, others as stored), or None."""
        row = self.get_row(label)
        if row is None or not row["secrets"]:
            return None
        value = self._decrypt(row["secrets"], label).get(name)
        if value is None:
            return None
        return base64.b64decode(value) if name == "seed" else value

    def holder_of(self, ip_int):
        return self.runs.holder_of(ip_int)

    def next_free(self, pool):
        """The lowest address of the pool's range that no record holds, or None (see allocation.HeldRuns)."""
        return self.runs.next_free(pool)

    def rebuild_address_index(self):
        """Rebuild ``held_runs`` from the records (after :meth:`verify` found it edited).  Call inside
        transaction(); returns whether it differed."""
        before = self.runs.runs()
        self.runs.rebuild()
        return before != self.runs.runs()

    # -- writes (call inside transaction())
    def _get(self, kind, key):
        table, keycol, _cols, _secret = KINDS[kind]
        return self.store.one("SELECT * FROM %s WHERE %s = ?" % (table, keycol), (key,))

    def _insert_row(self, kind, record):
        self._audit_key_for_write()  # the key is checked before anything is written
        table, _keycol, columns, _secret = KINDS[kind]
        sql = "INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), ", ".join("?" * len(columns)))
        self.store.execute(sql, tuple(record.get(c) for c in columns))

    def _update_row(self, kind, key, changes):
        self._audit_key_for_write()
        table, keycol, _cols, _secret = KINDS[kind]
        sets = ", ".join("%s = ?" % k for k in changes)
        self.store.execute("UPDATE %s SET %s WHERE %s = ?" % (table, sets, keycol), tuple(changes.values()) + (key,))

    def _insert(self, record):
        self._insert_row("node", record)
        if record.get("ip_int") is not None:
            self.runs.hold(record["ip_int"])

    def _update(self, label, changes):
        self._update_row("node", label, changes)

    def _audit(self, action, label, before, after, kind="node"):
        key = self._audit_key_for_write()
        last = self.store.one("SELECT height, hash FROM audit ORDER BY height DESC LIMIT 1")
        height = (last["height"] + 1) if last else 1
        prev_hash = last["hash"] if last else GENESIS_HASH
        ts = time.time()
        if kind in KINDS:
            before_v, after_v = as_view(before, kind), as_view(after, kind)
        else:
            before_v, after_v = before, after
        digest = chain.keyed_hash(key, height, ts, self.actor, action, kind, label, before_v, after_v, prev_hash)
        self.store.execute(
            "INSERT INTO audit (height, ts, actor, action, kind, label, before, after, prev_hash, hash)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (height, ts, self.actor, action, kind, label, canonical(before_v) if before_v is not None else None,
             canonical(after_v) if after_v is not None else None, prev_hash, digest))
        self._tx_head = (height, digest)

    def _latest_entry(self, label, kind="node"):
        """(height, after) of the newest audit entry of a record, or (None, None): one index probe."""
        row = self.store.one("SELECT height, after FROM audit WHERE kind = ? AND label = ? ORDER BY height DESC"
                             " LIMIT 1", (kind, label))
        if row is None:
            return None, None
        return row["height"], (json.loads(row["after"]) if row["after"] is not None else None)

    def _check_untampered(self, label, row, kind="node"):
        """Refuse to write a record that is no longer what its newest audit entry says.

        Recording such a row as the ``before`` of a new entry would make an edit made behind the registry's
        back look like history.  Costs one index probe and one small JSON document per write."""
        height, recorded = self._latest_entry(label, kind)
        current = audit_view(row, kind)
        if recorded == current:
            return
        if height is None:
            what = "it has no entry in the audit trail (added outside the registry)"
        elif current is None:
            what = "it is missing, though audit entry %d records it (deleted outside the registry)" % height
        elif recorded is None:
            what = "audit entry %d records it as removed" % height
        else:
            what = "it differs from audit entry %d in %s" % (height, ", ".join(differing(recorded, current)))
        raise RegistryError("the record was changed outside the registry: %s. Nothing was written; run the audit "
                            "playbook (playbooks/audit.yml) to see the change, then restore the record or have "
                            "it accepted" % what, label=label, kind=kind)

    def _change(self, action, label, changes, checked=False):
        before = self.get_row(label)
        if not checked:
            self._check_untampered(label, before)
        changes = {k: v for k, v in changes.items() if before[k] != v}
        if not changes:
            return False
        if "status" in changes or "ip_int" in changes:
            status = changes.get("status", before["status"])
            # A host-network node holds a port on its Docker host instead of an address (placement.py).
            holds_port = changes.get("port", before["port"]) is not None and \
                changes.get("network_mode", before["network_mode"]) == "host"
            if changes.get("ip_int", before["ip_int"]) is None and not holds_port and status not in LIVE_WITHOUT_ADDRESS:
                raise RegistryError(
                    "holds no address (it is %s, e.g. decommissioned meanwhile), so it cannot become %s; only "
                    "fenrir.fleet.fleet_registry (allocation) brings it back, with an address"
                    % (before["status"], status), label=label, field="status")
        changes["updated_at"] = time.time()
        self._update(label, changes)
        if "ip_int" in changes:
            if before["ip_int"] is not None:
                self.runs.release(before["ip_int"])
            if changes["ip_int"] is not None:
                self.runs.hold(changes["ip_int"])
        self._audit(action, label, before, self.get_row(label))
        return True

    def ensure(self, spec, pool):
        """Make ``spec['label']`` a node holding an address; returns (before, after, changed), public views.

        spec keys: label (required), ip (pinned, optional), server_id, provider, location, nonce, docker_host,
        network_mode, image.  An existing active node keeps its address; a destroyed or failed one without an
        address gets its previous address back when it is in the pool and free, else :meth:`next_free`.
        """
        label = spec["label"]
        row = self.get_row(label)
        self._check_untampered(label, row)
        pinned = pool.check_pinned(spec["ip"], label) if spec.get("ip") else None
        now = time.time()
        fields = {k: spec[k] for k in ("server_id", "provider", "location", "nonce", "docker_host", "network_mode",
                                       "image") if spec.get(k) is not None}
        if fields.get("network_mode") is not None and fields["network_mode"] not in NETWORK_MODES:
            raise RegistryError("network_mode %r is not one of %s" % (fields["network_mode"], ", ".join(NETWORK_MODES)),
                                label=label, field="network_mode")
        if row is not None and row["ip_int"] is not None:
            current = ipaddress.IPv4Address(row["ip_int"])
            if current not in pool.subnet:
                raise RegistryError("holds %s, outside the subnet %s; decommission it before moving it"
                                    % (current, pool.subnet), label=label, field="ip")
            if pinned is not None and pinned != current:
                raise RegistryError("pinned ip %s differs from the address %s the node already holds; "
                                    "decommission the node to move it" % (pinned, current), label=label, field="ip")
            changed = self._change("update", label, dict(fields), checked=True)
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
                          ip=ip, ip_int=ip_int, nonce=spec.get("nonce"), status="provisioning", created_at=now,
                          updated_at=now, docker_host=spec.get("docker_host"),
                          network_mode=spec.get("network_mode") or "bridge", image=spec.get("image"))
            self._insert(record)
            after = self.get_row(label)
            self._audit("allocate", label, None, after)
            return None, public(after), True
        changes = dict(fields, ip=ip, ip_int=ip_int, status="provisioning", reason=None, container_id=None)
        self._change("allocate", label, changes, checked=True)
        return public(row), public(self.get_row(label)), True

    def _node_secrets(self, label):
        row = self.get_row(label)
        if row is None:
            raise RegistryError("is not in the registry", label=label)
        self._check_untampered(label, row)
        return row, (self._decrypt(row["secrets"], label) if row["secrets"] else {})

    def _store_secrets(self, label, row, secrets, action):
        self._update(label, dict(secrets=self._encrypt(secrets, label), updated_at=time.time()))
        self._audit(action, label, row, self.get_row(label))

    def ensure_identity(self, label, seed=None, generate=None):
        """Keep a node's Ed25519 seed (encrypted).  A given seed replaces the stored one;
        without one, the stored seed is kept, or ``generate()`` makes a fresh one.
        Returns (seed, changed)."""
        row, secrets = self._node_secrets(label)
        stored = base64.b64decode(secrets["seed"]) if secrets.get("seed") else None
        if seed is None:
            if stored is not None:
                return stored, False
            seed = generate()
        elif stored is not None and hmac.compare_digest(stored, seed):
            return stored, False
        secrets["seed"] = base64.b64encode(seed).decode("ascii")
        self._store_secrets(label, row, secrets, "identity")
        return seed, True

    def ensure_secret(self, label, name, generate):
        """Keep a node's secret ``name`` beside its seed (``cockpit_token``, ...): the stored value, else
        ``generate()``'s (a string), kept encrypted.  ``seed`` is the identity (bytes; see
        :meth:`ensure_identity`).  Returns (value, changed)."""
        if name == "seed":
            return self.ensure_identity(label, None, generate)
        row, secrets = self._node_secrets(label)
        if secrets.get(name) is not None:
            return secrets[name], False
        value = generate()
        if not isinstance(value, str):
            raise RegistryError("secret %r must be a string" % name, label=label, field=name)
        secrets[name] = value
        self._store_secrets(label, row, secrets, "secret")
        return value, True

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
        if "network_mode" in changes and changes["network_mode"] not in NETWORK_MODES:
            raise RegistryError("network_mode %r is not one of %s" % (changes["network_mode"],
                                                                      ", ".join(NETWORK_MODES)),
                                label=label, field="network_mode")
        if "reason" in changes:
            changes["reason"] = clean_reason(changes["reason"])
        if self.get_row(label) is None:
            raise RegistryError("is not in the registry", label=label)
        return self._change(action, label, changes)

    def allocate_port(self, label, start=9010, end=9999, step=1):
        """A port for ``label`` on its Docker host (host-network mode), unique per host: the one it holds, else
        the lowest free ``start + k*step``.  Call inside transaction(); returns (port, changed)."""
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry.allocation import free_port
        row = self.get_row(label)
        if row is None:
            raise RegistryError("is not in the registry", label=label)
        if row["port"] is not None:
            return row["port"], False
        if row["ip_int"] is None and (row["network_mode"] != "host" or row["status"] == "destroyed"):
            raise RegistryError("holds no address (it is %s); allocate it first" % row["status"], label=label,
                                field="port")
        port = free_port(self.store, row["docker_host"], start, end, step)
        if port is None:
            raise RegistryError("no free port %d-%d on Docker host %s" % (start, end, row["docker_host"] or "local"),
                                label=label, field="port")
        self._change("port", label, dict(port=port))
        return port, True

    def destroy(self, label, reason=None):
        """Mark a node destroyed and free its address (and port).  Returns (before, after, changed)."""
        row = self.get_row(label)
        if row is None:
            return None, None, False
        reason = clean_reason(reason)
        if row["status"] == "destroyed" and reason is None:
            reason = row["reason"]  # destroying again without a reason is no change
        changed = self._change("destroy", label, dict(status="destroyed", ip_int=None, container_id=None,
                                                      reason=reason, port=None))
        return public(row), public(self.get_row(label)), changed

    def fail(self, label, reason, release=False, container_removed=True):
        """Mark a node failed.  ``release`` frees its address; ``container_removed=False`` keeps the
        recorded container id (the caller left the container in place)."""
        if self.get_row(label) is None:
            raise RegistryError("is not in the registry", label=label)
        changes = dict(status="failed", reason=clean_reason(reason))
        if container_removed:
            changes["container_id"] = None
        if release:
            changes["ip_int"] = None
            changes["port"] = None
        return self._change("fail", label, changes)

    def accept_external_change(self, label, kind="node"):
        """Take a record as it is now after a change made outside the registry (found by :meth:`verify`,
        refused by every write): appends an ``accept`` entry whose ``before`` is what the trail recorded and
        ``after`` the record as found, by this registry's actor.  Call inside transaction(); returns whether
        there was anything to accept."""
        height, recorded = self._latest_entry(label, kind)
        row = self._get(kind, label)
        if recorded == audit_view(row, kind):
            return False
        if kind == "node" and (recorded or {}).get("ip_int") != (row["ip_int"] if row is not None else None):
            self.runs.rebuild()
        self._audit("accept", label, recorded, row, kind=kind)
        return True

    # -- the audit trail
    def audit_entries(self):
        return self.store.all("SELECT * FROM audit ORDER BY height")

    def verify(self):
        """Check the keyed hash chain and its anchor, that every record's entries follow on from each other, that
        the newest entry of every record matches its row, and that the index of held addresses matches the rows.

        Returns dict(ok, entries, problem, height, label) where problem names the first entry or row that
        does not match, or is None.  Needs the registry key (the chain is keyed).
        """
        # One read transaction: the trail and the rows are compared as of the same moment.
        self.store.begin_read()
        try:
            result = chain.verify(self)
            result["head"] = self.audit_head()
            return result
        except self.store.errors as exc:
            self.store.fail(exc, "read the audit trail")
        finally:
            self.store.rollback()


def spec_digest(spec):
    return hashlib.sha256(canonical(spec).encode("utf-8")).hexdigest()
