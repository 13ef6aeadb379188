# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where tenant records live: the fleet registry's ``tenants`` table, as the tenant modules use it.

:func:`open_store` is the one place the modules reach the registry (a SQLite path or a ``postgresql://`` DSN,
see the registry package). Each tenant is a record there -- written in the registry's transactions, every change
an entry in its keyed audit chain -- and the spec is kept encrypted beside a digest. In check mode the registry
is a private copy (the registry package makes it): writes are planned there, so ``changed`` is exact, and nothing
reaches the registry.

A record as the modules see it (the registry's tenant view; the spec itself is never read back)::

    tenant_id       key
    prefix          the naming prefix its container was made under
    docker_host     the engine it runs on (base URL)
    container_name  <prefix>-tenant-<tenant_id>
    container_id    the container, or None
    image           the image reference of the spec in force
    image_id        the image the container runs (sha256:...)
    spec_digest     SHA-256 of the spec as kept (encrypted) in the registry; has_spec: whether one is kept
    status          provisioning | running | starting | stopped | failed | destroyed
    reason          why (failed, rolled back, destroyed), scrubbed of secrets by the registry, or None
    exit_code       the container's last exit code when it is not running, or None
    created_at, updated_at
"""

from __future__ import annotations

import contextlib

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import TENANT_FIELDS

LIVE_STATUSES = ("provisioning", "running", "starting", "stopped", "failed")


def is_live(record):
    """A record of a tenant that should have a container (not destroyed)."""
    return record is not None and record.get("status") in LIVE_STATUSES


class TenantStore:
    """The registry's tenant API, as the tenant modules call it (one registry, opened by :func:`open_store`)."""

    FIELDS = TENANT_FIELDS

    def __init__(self, registry):
        self.registry = registry

    def transaction(self):
        """One registry transaction for several writes (one commit, one write lock)."""
        return self.registry.transaction()

    def get_tenant(self, tenant_id):
        """The record (a destroyed one too), or None."""
        return self.registry.get_tenant(tenant_id)

    def put_tenant(self, tenant_id, spec=None, **fields):
        """Create or change the record; ``spec`` None keeps the one kept. Returns (record, changed)."""
        dummy, after, changed = self.registry.put_tenant(tenant_id, spec=spec, **fields)
        return after, changed

    def destroy_tenant(self, tenant_id, reason):
        """Status ``destroyed``, no container. Returns (record or None, changed)."""
        dummy, after, changed = self.registry.destroy_tenant(tenant_id, reason)
        return after, changed

    def tenants(self, include_destroyed=True):
        """Every record, ordered by tenant id."""
        return self.registry.tenants(include_destroyed=include_destroyed)


@contextlib.contextmanager
def open_store(registry, key_file=None, check_mode=False):
    """The tenant records of ``registry`` (a path or a postgresql:// DSN), for the length of a ``with`` block.

    ``key_file``: the registry's key (else where the registry package looks: FENRIR_REGISTRY_KEY(_FILE), or
    fleet.key beside a SQLite file); the key is only needed to write a spec. With ``check_mode`` the registry is
    a private copy: nothing written here is kept.
    """
    reg = Registry(registry, key_file=key_file, check_mode=check_mode)
    try:
        yield TenantStore(reg)
    finally:
        reg.close()
