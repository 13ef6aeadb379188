# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a fleet's memory: a registry copied between SQLite and PostgreSQL, every record, secret and audit
entry as it is, verified by the audit chain afterwards.

The chain's keyed hashes and the sealed secrets do not depend on the store, so a copy verifies with the same
key.  The source is read through a check-mode registry (one snapshot, no lock, nothing written to it): an
original skill's fleet.db or an older schema is adopted or migrated in memory on the way, so a fleet.db can
go straight into PostgreSQL and the file is left as it was.

The copy records where it came from: a keyed ``copy`` entry (the source and its newest entry) and the source's
location in ``registry_meta.former_locations``, so containers labelled for the old registry are the new one's.
That entry also makes copying idempotent: a target holding a copy of the source as it is now is left alone.
"""

from __future__ import annotations

import json
import os

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import (
    FORMER_LOCATIONS, SCHEMA_VERSION, SCRUB_PENDING, RegistryError)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.schema import SCHEMA, TABLES

SNAPSHOT_SKIPS_META = (SCRUB_PENDING, "schema_version")  # check mode's private copy keeps the rest
NOT_COPIED_META = SNAPSHOT_SKIPS_META + (FORMER_LOCATIONS,)  # a copy gets its own (the source's plus the source)
RECORD_TABLES = ("nodes", "audit", "hosts", "tenants", "registry_secrets", "fleet_nodes")


def _copy_rows(src, dst, table):
    rows = src.all("SELECT * FROM %s" % table)
    if table == "registry_meta":
        rows = [r for r in rows if r["key"] not in SNAPSHOT_SKIPS_META]
    if rows:
        columns = list(rows[0])
        dst.executemany("INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), ", ".join("?" * len(columns))),
                        [tuple(bytes(v) if isinstance(v, memoryview) else v for v in (r[c] for c in columns))
                         for r in rows])
    return len(rows)


def copy_snapshot(src, dst):
    """Copy registry store ``src`` as of one snapshot into the empty store ``dst`` (check mode's scratch copy of
    a PostgreSQL registry).  A registry of this schema is copied table by table; an original skill's
    ``fleet_nodes`` (schema 0) as it is, to be adopted in ``dst``."""
    src.begin_read()
    try:
        version = src.schema_version()
        tables = src.tables()
        dst.begin_write()
        if version == 0 and "fleet_nodes" in tables:
            columns = src.columns("fleet_nodes")
            dst.execute("CREATE TABLE fleet_nodes (%s)" % ", ".join(
                "%s PRIMARY KEY" % c if c == "label" else c for c in columns))
            _copy_rows(src, dst, "fleet_nodes")
        elif version:
            if version != SCHEMA_VERSION:
                raise RegistryError("%s has schema version %d; this collection reads %d"
                                    % (src.location, version, SCHEMA_VERSION), field="registry")
            dst.ddl(SCHEMA)
            for table in TABLES:
                _copy_rows(src, dst, table)
            dst.set_schema_version(version)
        dst.commit()
    finally:
        src.rollback()


def _inspect_target(loc):
    """What the target holds, read without writing (a missing SQLite file is not created): dict(empty, counts,
    copy = the ``after`` of its newest ``copy`` entry or None, hash_at = {height: hash} of that entry's source
    head)."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import open_store
    if loc.is_file and not os.path.exists(loc.target):
        return dict(empty=True, counts={}, copy=None, hash_at={})
    store = open_store(loc, busy_timeout=30.0)
    try:
        tables = store.tables()
        counts = {t: store.scalar("SELECT count(*) AS n FROM %s" % t) for t in RECORD_TABLES if t in tables}
        copy, hash_at = None, {}
        if counts.get("audit"):
            row = store.one("SELECT after FROM audit WHERE kind = 'registry' AND action = 'copy' ORDER BY height DESC"
                            " LIMIT 1")
            copy = json.loads(row["after"]) if row and row["after"] else None
            height = ((copy or {}).get("source_head") or {}).get("height")
            if height:
                hash_at[height] = store.scalar("SELECT hash FROM audit WHERE height = ?", (height,))
        return dict(empty=not any(counts.values()), counts=counts, copy=copy, hash_at=hash_at)
    except store.errors as exc:
        store.fail(exc, "read it")
    finally:
        store.close()


def _already_copied(state, source_head):
    """Whether the target holds a copy of the source as it is now (made from it, and the source unchanged
    since): the target's newest ``copy`` entry names the source's head, and the target's entry at that height has
    that hash."""
    copy = state["copy"] or {}
    head = copy.get("source_head") or {}
    return (head.get("height") == source_head["height"] and head.get("hash") == source_head["hash"]
            and state["hash_at"].get(head.get("height")) == source_head["hash"])


def _not_empty(loc, state, source_head):
    copy = state["copy"] or {}
    head = copy.get("source_head") or {}
    if head and state["hash_at"].get(head.get("height")) == head.get("hash") and head.get("height", 0) < \
            source_head["height"]:
        return ("the target registry %s holds a copy of %s made at its audit entry %d, but the source has been "
                "written since (its newest entry is %d): the two have diverged. Decide which one is the fleet's "
                "registry; to copy again, copy into an empty one" % (loc.display, copy.get("source"), head["height"],
                                                                     source_head["height"]))
    tables = ", ".join("%s (%d rows)" % (t, n) for t, n in sorted(state["counts"].items()) if n)
    return ("the target registry %s is not empty (%s) and is no copy of this source; copy into an empty one"
            % (loc.display, tables))


def copy_registry(source, target, key_file=None, actor=None, create_key=False, check_mode=False):
    """Copy the registry at ``source`` into the empty registry ``target`` (a path or a ``postgresql://`` DSN each),
    then verify the copy's audit chain with the same key.

    ``key_file`` (or ``FENRIR_REGISTRY_KEY`` / ``FENRIR_REGISTRY_KEY_FILE``, or fleet.key beside a SQLite source)
    must hold the source's key; with ``create_key`` a key file is made when there is none (for a source that
    has no key yet, e.g. an original skill's fleet.db).  The copy gets one entry more than the source: a keyed
    ``copy`` entry (kind ``registry``) naming the source and its newest entry; the source's location is kept in
    the copy's ``former_locations`` (containers labelled for it are the copy's).  The source is never written.

    A target that already holds a copy of the source as it is now is left as it is (``changed`` false); any other
    target must have no records and no audit entries.  With ``check_mode`` nothing is written anywhere (not even
    a key file): the result says what would be copied.  Returns dict(changed, source, target, copied={table:
    rows}, entries, ok, source_head, audit_head, key_fingerprint, former_locations).  Raises RegistryError when
    the source does not verify, the target is not empty, or the copy does not verify (then it is rolled back or
    reported)."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import Registry
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.keys import KeySource
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import Location
    src_loc, dst_loc = Location(source), Location(target)
    if src_loc.display == dst_loc.display:
        raise RegistryError("the source and the target of the copy are the same registry %s" % src_loc.display,
                            field="target")
    keys = KeySource(src_loc, key_file)
    if not keys.given:
        raise RegistryError("copying a registry needs its key: looked in %s" % keys.describe(), field="key_file")
    if keys.load(create=create_key and keys.path is not None and not check_mode) is None and not check_mode:
        raise RegistryError("copying a registry needs its key: looked in %s. For a registry that has no key yet (an "
                            "original skill's fleet.db) set create_key to make one there" % keys.describe(),
                            field="key_file")
    if keys.path is not None and key_file is None:
        key_file = keys.path  # fleet.key beside a SQLite source: the target has no "beside"
    with Registry(source, key_file=key_file, actor=actor, check_mode=True) as src:
        if src._copy_pending:
            src._copy_into_scratch()  # one snapshot of the server: verified and copied as the same moment
        verdict = src.verify()
        if not verdict["ok"]:
            raise RegistryError("the source registry %s does not verify (%s); nothing was copied"
                                % (src.path, verdict["problem"]), field="registry")
        head = verdict["head"]
        rows = {table: _rows(src.store, table) for table in TABLES}
        former = [x for x in src.former_locations() + [src.path] if x != dst_loc.display]
        fingerprint = src.key_fingerprint()
    copied = {table: len(r) for table, r in rows.items()}
    out = dict(source=src_loc.display, target=dst_loc.display, copied=copied, source_head=head,
               key_fingerprint=fingerprint, former_locations=list(dict.fromkeys(former)))
    state = _inspect_target(dst_loc)
    if not state["empty"]:
        if not _already_copied(state, head):
            raise RegistryError(_not_empty(dst_loc, state, head), field="target")
        with Registry(target, key_file=key_file, actor=actor, check_mode=True) as copy:
            check = copy.verify()
        if not check["ok"]:
            raise RegistryError("the target %s holds a copy of this source, but it does not verify: %s"
                                % (dst_loc.display, check["problem"]), field="target")
        return dict(out, changed=False, entries=check["entries"], audit_head=check["head"], ok=True)
    if check_mode:
        return dict(out, changed=True, entries=head["height"] + 1, audit_head=None, ok=True)
    with Registry(target, key_file=key_file, actor=actor) as dst:
        with dst.transaction():
            # Under the target's write lock: nobody wrote to it since it was looked at.
            tables = dst.store.tables()
            for table in RECORD_TABLES:
                if table in tables and dst.store.scalar("SELECT count(*) AS n FROM %s" % table):
                    raise RegistryError("the target registry %s is not empty (table %s has rows); copy into an "
                                        "empty one" % (dst_loc.display, table), field="target")
            for table in TABLES:
                _insert_rows(dst.store, table, rows[table])
            dst._legacy_count = None
            dst.store.set_meta(FORMER_LOCATIONS, json.dumps(out["former_locations"]))
            dst._audit("copy", None, None, dict(source=src_loc.display, source_head=head, records=copied,
                                                key_fingerprint=fingerprint), kind="registry")
        check = dst.verify()
    if not check["ok"]:
        raise RegistryError("the copy in %s does not verify: %s" % (dst_loc.display, check["problem"]),
                            field="registry")
    return dict(out, changed=True, entries=check["entries"], audit_head=check["head"], ok=True)


def _rows(store, table):
    rows = store.all("SELECT * FROM %s" % table)
    if table == "registry_meta":
        rows = [r for r in rows if r["key"] not in NOT_COPIED_META]
    return [{k: bytes(v) if isinstance(v, memoryview) else v for k, v in r.items()} for r in rows]


def _insert_rows(store, table, rows):
    if not rows:
        return
    if table == "registry_meta":  # a new registry may hold some already (PostgreSQL: its schema version)
        for r in rows:
            store.set_meta(r["key"], r["value"])
        return
    columns = list(rows[0])
    store.executemany("INSERT INTO %s (%s) VALUES (%s)" % (table, ", ".join(columns), ", ".join("?" * len(columns))),
                      [tuple(r[c] for c in columns) for r in rows])
