# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where tenant records live: the store interface the tenant modules are written against.

The fleet registry is being rebuilt as a package with a ``tenants`` table (encrypted ``spec``, status
history in the audit chain). Until it is on this branch, the modules talk to :class:`TenantStore` --
exactly the four methods that registry will offer -- and :func:`open_store` is the **one** place where the
real registry is plugged in. The stand-in it returns meanwhile is :class:`MemoryTenantStore`, seeded from
what the Docker engine shows (each tenant container carries its tenant id, spec digest and registry), so
a run computes ``changed`` exactly; it persists nothing, and the modules say so (``registry.persisted``
false and a warning).

A record (:data:`RECORD_FIELDS`)::

    tenant_id       key
    prefix          the naming prefix the tenant's container was made under
    docker_host     the engine it runs on (base URL)
    container_name  <prefix>-tenant-<tenant_id>
    container_id    the container, or None
    image           the image reference of the spec
    image_id        the image the container runs (sha256:...)
    spec_digest     digest of what a change of needs a new container (see tenant_spec.spec_digest)
    spec            the normalized spec, env included: secret -- the registry keeps it encrypted
    status          provisioning | running | starting | stopped | failed | destroyed
    reason          why (failed, rolled back, destroyed), or None
    exit_code       the container's last exit code when it is not running, or None
    created_at, updated_at   set by the store
"""

from __future__ import annotations

import copy
import os
import time
from urllib.parse import urlsplit, urlunsplit

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError

RECORD_FIELDS = ("tenant_id", "prefix", "docker_host", "container_name", "container_id", "image", "image_id",
                 "spec_digest", "spec", "status", "reason", "exit_code")
TIMESTAMP_FIELDS = ("created_at", "updated_at")
# Fields whose change is a change of the record. ``spec`` is not among them: every change of the spec that
# matters changes spec_digest or the container (resources are updated on the container), and a store that
# was seeded from Docker does not know the spec.
COMPARED_FIELDS = tuple(f for f in RECORD_FIELDS if f != "spec")
LIVE_STATUSES = ("provisioning", "running", "starting", "stopped", "failed")


class TenantStoreError(FleetError):
    kind = "tenant"


class TenantStore:
    """What the tenant modules need from the fleet registry: exactly these four methods.

    * ``put_tenant(record)`` -- insert or update the record of ``record['tenant_id']`` (every field of
      :data:`RECORD_FIELDS`), one audit entry per call, in one transaction; returns the stored record.
    * ``get_tenant(tenant_id)`` -- the record (a destroyed one too, with status ``destroyed``) or None.
    * ``destroy_tenant(tenant_id, reason)`` -- status ``destroyed``, ``container_id`` None, reason kept;
      returns the record, or None when there was none.
    * ``tenants()`` -- every record, destroyed ones included, ordered by tenant_id.
    """

    def put_tenant(self, record):
        raise NotImplementedError

    def get_tenant(self, tenant_id):
        raise NotImplementedError

    def destroy_tenant(self, tenant_id, reason):
        raise NotImplementedError

    def tenants(self):
        raise NotImplementedError


class MemoryTenantStore(TenantStore):
    """Records in a dict, with a history list standing in for the audit chain (unit tests, and the stand-in)."""

    def __init__(self, records=(), clock=time.time):
        self._clock = clock
        self._records = {}
        self.history = []  # (action, tenant_id, before, after)
        for record in records:
            self._records[record["tenant_id"]] = _complete(record, self._clock())

    def put_tenant(self, record):
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise TenantStoreError("record lacks %s" % ", ".join(missing), label=record.get("tenant_id"))
        if record["status"] not in LIVE_STATUSES:
            raise TenantStoreError("status %r cannot be put (destroy_tenant destroys)" % record["status"],
                                   label=record["tenant_id"], field="status")
        before = self._records.get(record["tenant_id"])
        now = self._clock()
        after = _complete(record, now)
        if before is not None:
            after["created_at"] = before["created_at"]
        self._records[record["tenant_id"]] = after
        self.history.append(("put", record["tenant_id"], copy.deepcopy(before), copy.deepcopy(after)))
        return copy.deepcopy(after)

    def get_tenant(self, tenant_id):
        record = self._records.get(tenant_id)
        return copy.deepcopy(record) if record is not None else None

    def destroy_tenant(self, tenant_id, reason):
        before = self._records.get(tenant_id)
        if before is None:
            return None
        after = dict(before, status="destroyed", container_id=None, reason=reason, exit_code=None,
                     updated_at=self._clock())
        self._records[tenant_id] = after
        self.history.append(("destroy", tenant_id, copy.deepcopy(before), copy.deepcopy(after)))
        return copy.deepcopy(after)

    def tenants(self):
        return [copy.deepcopy(self._records[k]) for k in sorted(self._records)]


def _complete(record, now):
    out = {f: copy.deepcopy(record.get(f)) for f in RECORD_FIELDS}
    out["created_at"] = record.get("created_at") or now
    out["updated_at"] = now
    return out


def record_changed(before, after):
    """Whether ``after`` differs from the stored ``before`` in a field that matters (timestamps never do)."""
    if before is None:
        return True
    return any(before.get(f) != after.get(f) for f in COMPARED_FIELDS)


def registry_location(registry):
    """The registry as containers are labelled with it (fenrir.fleet.registry): an absolute path, or a DSN
    without its password (a label is readable by anyone who may inspect the container)."""
    if not isinstance(registry, str) or not registry.strip():
        raise FleetError("must be the fleet registry: a path or a postgresql:// DSN", field="registry")
    if "://" not in registry:
        return os.path.abspath(os.path.expanduser(registry))
    parts = urlsplit(registry)
    if parts.scheme not in ("postgresql", "postgres"):
        raise FleetError("%r: a registry DSN must be postgresql://..." % parts.scheme, field="registry")
    netloc = parts.hostname or ""
    if parts.port:
        netloc += ":%d" % parts.port
    if parts.username:
        netloc = parts.username + "@" + netloc
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def open_store(registry, check_mode=False, observed=()):
    """The tenant store of ``registry`` (a path or a postgresql:// DSN): ``(store, persisted)``.

    ``observed``: records as the Docker engine shows the tenants (built by the caller from the containers'
    labels and state); the stand-in store starts from them.
    """
    # ------------------------------------------------------------------------------------------------
    # REGISTRY PLUG-IN POINT (issue 13). When the registry package with its ``tenants`` table lands, return
    # its tenant API here instead -- something like:
    #     reg = fleet_registry.open(registry, check_mode=check_mode)   # path or postgresql:// DSN
    #     return reg.tenant_store(), True                              # put/get/destroy_tenant, tenants
    # Nothing else in the collection knows where records live. In check mode the store must plan on a
    # private copy (never write), as the node registry does.
    # ------------------------------------------------------------------------------------------------
    del registry, check_mode
    return MemoryTenantStore(observed), False
