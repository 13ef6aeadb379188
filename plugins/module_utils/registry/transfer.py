# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a fleet's memory: a registry copied between SQLite and PostgreSQL, every record, secret and audit
entry as it is, verified by the audit chain afterwards.

The chain's keyed hashes and the sealed secrets do not depend on the store, so a copy verifies with the same
key.  The source is read through a check-mode registry (one snapshot, no lock, nothing written to it): an
original skill's fleet.db or an older schema is adopted or migrated in memory on the way, so a fleet.db can
go straight into PostgreSQL and the file is left as it was.
"""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import SCHEMA_VERSION, SCRUB_PENDING, \
    RegistryError
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.schema import SCHEMA, TABLES

NOT_COPIED_META = (SCRUB_PENDING, "schema_version")


def _copy_rows(src, dst, table):
    rows = src.all("SELECT * FROM %s" % table)
    if table == "registry_meta":
        rows = [r for r in rows if r["key"] not in NOT_COPIED_META]
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


def copy_registry(source, target, key_file=None, actor=None, create_key=False):
    """Copy the registry at ``source`` into the empty registry ``target`` (a path or a ``postgresql://`` DSN each),
    then verify the copy's audit chain with the same key.

    ``key_file`` (or ``FENRIR_REGISTRY_KEY`` / ``FENRIR_REGISTRY_KEY_FILE``, or fleet.key beside a SQLite source)
    must hold the source's key; with ``create_key`` a key file is made when there is none (for a source that
    has no key yet, e.g. an original skill's fleet.db).  The target must have no records and no audit entries.
    Returns dict(source, target, copied={table: rows}, entries, ok=True).  Raises RegistryError when the source
    does not verify, the target is not empty, or the copy does not verify (then it is rolled back or reported).
    """
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import Registry, open_store
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.keys import KeySource
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import Location
    src_loc, dst_loc = Location(source), Location(target)
    keys = KeySource(src_loc, key_file)
    if not keys.given or keys.load(create=create_key and keys.path is not None) is None:
        raise RegistryError("copying a registry needs its key: looked in %s" % keys.describe(), field="key_file")
    if keys.path is not None and key_file is None:
        key_file = keys.path  # fleet.key beside a SQLite source: the target has no "beside"
    with Registry(source, key_file=key_file, actor=actor, check_mode=True) as src:
        verdict = src.verify()
        if not verdict["ok"]:
            raise RegistryError("the source registry %s does not verify (%s); nothing was copied"
                                % (src.path, verdict["problem"]), field="registry")
        dst = open_store(dst_loc)
        try:
            dst.setup()
            dst.begin_write()
            try:
                tables = dst.tables()
                for table in ("nodes", "audit", "hosts", "tenants", "fleet_nodes"):
                    if table in tables and dst.scalar("SELECT count(*) AS n FROM %s" % table):
                        raise RegistryError("the target registry %s is not empty (table %s has rows); copy into an "
                                            "empty one" % (dst_loc.display, table), field="registry")
                dst.ddl(SCHEMA)
                copied = {table: _copy_rows(src.store, dst, table) for table in TABLES}
                dst.set_schema_version(SCHEMA_VERSION)
                dst.commit()
            except BaseException:
                dst.rollback()
                raise
        except dst.errors as exc:
            dst.fail(exc, "copy into it")
        finally:
            dst.close()
    with Registry(target, key_file=key_file, actor=actor) as copy:
        check = copy.verify()
    if not check["ok"]:
        raise RegistryError("the copy in %s does not verify: %s" % (dst_loc.display, check["problem"]),
                            field="registry")
    return dict(source=src_loc.display, target=dst_loc.display, copied=copied, entries=check["entries"], ok=True)
