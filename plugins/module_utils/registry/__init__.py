# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet registry: nodes, Docker hosts, tenants, their secrets and the audit chain, in SQLite or PostgreSQL.

Rooms, one job each:

* ``location.py`` -- a path (SQLite) or a ``postgresql://`` DSN (PostgreSQL); DSNs shown without password.
* ``store.py`` / ``store_postgres.py`` -- the one storage interface and its two implementations.
* ``schema.py`` -- the tables (schema 5) for both backends and the structural migration steps.
* ``core.py`` -- :class:`Registry`: transactions, migration, nodes (allocation, identities, statuses), checks.
* ``records.py`` -- Docker hosts (subnets), tenants (encrypted specs), the provisioner's identity.
* ``allocation.py`` -- :class:`Pool`, the index of held addresses, host subnets, ports per host.
* ``keys.py`` -- where the key comes from, its fingerprint, secrets sealed to their record.
* ``audit.py`` -- the keyed chain, its anchor, :func:`entry_hash` of unkeyed (schema 4) entries, verify.
* ``adoption.py`` -- the original skill's fleet.db, and scrubbing its plain text from the file.
* ``transfer.py`` -- a registry copied between SQLite and PostgreSQL, verified.
* ``rotation.py`` -- the key rotated end to end: re-encryption, the new key file, recovery.
* ``readonly.py`` -- the registry read without writing and without its key (inventory, drift).
"""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.allocation import Pool
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.audit import entry_hash
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import (
    ACTIVE_STATUSES, COLUMNS, DEFAULT_FLEET_RANGE, GENESIS_HASH, HOST_STATUSES, NETWORK_MODES, SCHEMA_VERSION,
    STATUSES, TENANT_STATUSES, RegistryError, audit_view, clean_reason, default_actor, public)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import Registry
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.keys import (
    ENV_KEY, ENV_KEY_FILE, fingerprint, load_or_create_key, write_key_file)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import is_dsn, redact_dsn, registry_id
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.readonly import (
    check_readable, former_locations, read_hosts, read_nodes, registry_exists)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.rotation import rotate
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.transfer import copy_registry

__all__ = [
    "ACTIVE_STATUSES", "COLUMNS", "DEFAULT_FLEET_RANGE", "ENV_KEY", "ENV_KEY_FILE", "GENESIS_HASH", "HOST_STATUSES",
    "NETWORK_MODES", "SCHEMA_VERSION", "STATUSES", "TENANT_STATUSES",
    "Pool", "Registry", "RegistryError",
    "audit_view", "check_readable", "clean_reason", "copy_registry", "default_actor", "entry_hash", "fingerprint",
    "former_locations", "is_dsn", "load_or_create_key", "public", "read_hosts", "read_nodes", "redact_dsn",
    "registry_exists", "registry_id", "rotate", "write_key_file",
]
