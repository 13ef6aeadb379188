# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry read without writing and without its key: the inventory and the drift report.

A SQLite file is opened ``mode=ro``; a PostgreSQL registry in a READ ONLY transaction.  Never created,
migrated or written; a registry of another schema version is refused with what to do.
"""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import quote

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import (
    FORMER_LOCATIONS, SCHEMA_VERSION, RegistryError, public)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import Location


def _refuse(where, version, tables):
    if version > SCHEMA_VERSION:
        raise RegistryError("the fleet registry %s has schema version %d; this collection reads version %d. "
                            "Use a newer fenrir.fleet." % (where, version, SCHEMA_VERSION), field="registry")
    origin = (" (written by the original fleet-provision-docker-lite skill)" if "fleet_nodes" in tables else "")
    raise RegistryError("the fleet registry %s has schema version %d%s, not %d; it is only read here, never "
                        "migrated. Migrate it by running any fenrir.fleet.fleet_registry task (or "
                        "playbooks/provision.yml) against it once." % (where, version, origin, SCHEMA_VERSION),
                        field="registry")


def _sqlite(loc):
    path = loc.target
    if os.path.isdir(path):
        raise RegistryError("the fleet registry %s is a directory; give the path of fleet.db" % path, field="registry")
    if not os.path.isfile(path):
        raise RegistryError("the fleet registry %s does not exist" % path, field="registry")
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % quote(path), uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise RegistryError("cannot open the fleet registry %s read-only: %s" % (path, exc), field="registry")
    conn.row_factory = sqlite3.Row
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise RegistryError("%s is not a usable fleet registry: %s" % (path, exc), field="registry")
    if version != SCHEMA_VERSION or "nodes" not in tables:
        conn.close()
        _refuse(path, version, tables)
    return conn


def read_nodes(location, include_destroyed=False):
    """Every node record (public fields only, no secrets), ordered by address, read in one snapshot.

    Each record has ``address_held``: whether the node holds its address (``ip``) right now.  A destroyed node,
    or a failed one whose address was released, keeps ``ip`` as its last address."""
    loc = Location(location)
    sql = "SELECT * FROM nodes"
    if not include_destroyed:
        sql += " WHERE status != 'destroyed'"
    sql += " ORDER BY ip_int IS NULL, ip_int, label"
    rows = _select(loc, sql, "nodes")
    return [dict(public(r), address_held=r["ip_int"] is not None) for r in rows]


def _select(loc, sql, what):
    """The rows of ``sql`` (a plain SELECT over ``what``, a table), read in one snapshot without writing."""
    if loc.backend == "sqlite":
        conn = _sqlite(loc)
        try:
            return [dict(r) for r in conn.execute(sql).fetchall()]
        except sqlite3.DatabaseError as exc:
            raise RegistryError("cannot read the %s of the fleet registry %s: %s" % (what, loc.display, exc),
                                field="registry")
        finally:
            conn.close()
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.store_postgres import PostgresStore
    store = PostgresStore(loc)
    try:
        store.begin_read()
        version, tables = store.schema_version(), store.tables()
        if version != SCHEMA_VERSION or "nodes" not in tables:
            _refuse(loc.display, version, tables)
        rows = store.all(sql)
        store.rollback()
        return rows
    except store.errors as exc:
        store.fail(exc, "read its %s" % what)
    finally:
        store.close()


def _older_schema(loc):
    """Whether the registry at ``loc`` has an older schema than this collection's (it has no hosts then)."""
    if loc.backend == "sqlite":
        try:
            conn = sqlite3.connect("file:%s?mode=ro" % quote(loc.target), uri=True, timeout=30.0)
        except sqlite3.Error:
            return False
        try:
            return conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION
        except sqlite3.DatabaseError:
            return False
        finally:
            conn.close()
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.store_postgres import PostgresStore
    store = PostgresStore(loc)
    try:
        return store.schema_version() < SCHEMA_VERSION
    except store.errors:
        return False
    finally:
        store.close()


def read_hosts(location, include_decommissioned=False):
    """Every Docker host record (no secrets: hosts have none), ordered by name, read without writing; [] for a
    registry without hosts, also one of an older schema (hosts came with schema 5; it is migrated on first write)."""
    loc = Location(location)
    try:
        return _read_hosts(loc, include_decommissioned)
    except RegistryError:
        if _older_schema(loc):
            return []
        raise


def _read_hosts(loc, include_decommissioned):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import HOST_COLUMNS
    sql = "SELECT * FROM hosts"
    if not include_decommissioned:
        sql += " WHERE status != 'decommissioned'"
    sql += " ORDER BY name"
    rows = _select(loc, sql, "hosts")
    return [{c: r[c] for c in HOST_COLUMNS if c != "subnet_int"} for r in rows]


def check_readable(location):
    """Refuse a registry that does not exist or has another schema version (before opening it to verify)."""
    loc = Location(location)
    if loc.backend == "sqlite":
        _sqlite(loc).close()
        return
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.store_postgres import PostgresStore
    store = PostgresStore(loc)
    try:
        version, tables = store.schema_version(), store.tables()
        if version != SCHEMA_VERSION or "nodes" not in tables:
            _refuse(loc.display, version, tables)
    except store.errors as exc:
        store.fail(exc, "read it")
    finally:
        store.close()


def registry_exists(location):
    """Whether there is a registry at ``location`` (a file; a PostgreSQL database holding the tables)."""
    loc = Location(location)
    if loc.backend == "sqlite":
        return os.path.exists(loc.target)
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.store_postgres import PostgresStore
    store = PostgresStore(loc)
    try:
        return "nodes" in store.tables() or "fleet_nodes" in store.tables()
    except store.errors as exc:
        store.fail(exc, "read it")
    finally:
        store.close()


def former_locations(location):
    """The registries this one was copied from (``transfer.copy_registry``), as they are shown; [] when there is
    no registry at ``location`` or it was never copied.  Read without the key: containers labelled for one of
    them are this registry's (drift, removal)."""
    import json
    loc = Location(location)
    if loc.backend == "sqlite":
        if not os.path.isfile(loc.target):
            return []
        conn = _sqlite(loc)
        try:
            row = conn.execute("SELECT value FROM registry_meta WHERE key = ?", (FORMER_LOCATIONS,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise RegistryError("cannot read the fleet registry %s: %s" % (loc.display, exc), field="registry")
        finally:
            conn.close()
        value = row[0] if row else None
    else:
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry.store_postgres import PostgresStore
        store = PostgresStore(loc)
        try:
            value = store.get_meta(FORMER_LOCATIONS)
        except store.errors as exc:
            store.fail(exc, "read it")
        finally:
            store.close()
    return json.loads(value) if value else []
