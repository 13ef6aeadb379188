# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Docker hosts, tenants and the provisioner's identity: records beside the nodes, audited the same way.

Each call runs in the caller's transaction when one is open (``with reg.transaction():``), else in one of
its own.  Every change appends an audit entry with the record's kind (``host``, ``tenant``, ``secret``), and
every write first checks that the record is what its newest entry says (as for nodes).

* Hosts: ``ensure_host``, ``set_host``, ``get_host``, ``hosts``, ``decommission_host``.  Each host gets a
  ``fenrir-fleet`` /24 of its own from the fleet range (default 172.21.0.0/16; 172.21.0.0/24 stays the local
  engine's), unique (``hosts.subnet_int``) and allocated inside the write transaction.
* Tenants: ``put_tenant``, ``get_tenant``, ``get_tenant_spec``, ``destroy_tenant``, ``tenants``.  The spec is
  kept encrypted (its env may hold secrets), with a digest beside it to compare without decrypting.
* ``provisioner_seed(create=True)``, ``ensure_provisioner(seed=None)``: the controller's Ed25519 seed, made on
  first use (or the operator's own), kept encrypted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import time

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import (
    DEFAULT_FLEET_RANGE, DEFAULT_SUBNET, HOST_COLUMNS, HOST_FIELDS, HOST_STATUSES, TENANT_COLUMNS, TENANT_FIELDS,
    TENANT_STATUSES, RegistryError, canonical, clean_reason)

HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}$")
TENANT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
PROVISIONER = "provisioner"


def host_view(row):
    return None if row is None else {c: row[c] for c in HOST_COLUMNS if c != "subnet_int"}


def tenant_view(row):
    if row is None:
        return None
    view = {c: row[c] for c in TENANT_COLUMNS if c != "spec"}
    view["has_spec"] = row["spec"] is not None
    return view


class RecordsMixin:
    """Hosts, tenants and registry secrets (mixed into :class:`Registry`)."""

    # -- generic
    def _put(self, kind, key, record, changes, action_new, action):
        """Insert ``record`` when ``key`` is new, else apply ``changes``.  Returns (before row, after row, changed)."""
        row = self._get(kind, key)
        self._check_untampered(key, row, kind)
        now = time.time()
        if row is None:
            self._insert_row(kind, dict(record, created_at=now, updated_at=now))
            after = self._get(kind, key)
            self._audit(action_new, key, None, after, kind=kind)
            return None, after, True
        changes = {k: v for k, v in changes.items() if row[k] != v}
        if not changes:
            return row, row, False
        changes["updated_at"] = now
        self._update_row(kind, key, changes)
        after = self._get(kind, key)
        self._audit(action, key, row, after, kind=kind)
        return row, after, True

    @staticmethod
    def _fields(kind, key, fields, allowed, statuses):
        """``fields`` checked (known, a valid status) with the reason scrubbed; errors name the record."""
        unknown = set(fields) - set(allowed)
        if unknown:
            raise RegistryError("unknown fields %s" % ", ".join(sorted(unknown)), label=key, kind=kind)
        if "status" in fields and fields["status"] not in statuses:
            raise RegistryError("status %r is not one of %s" % (fields["status"], ", ".join(statuses)),
                                label=key, field="status", kind=kind)
        if "reason" in fields:
            fields["reason"] = clean_reason(fields["reason"])
        return fields

    # -- hosts
    def _host_fields(self, name, fields):
        return self._fields("host", name, fields, HOST_FIELDS, HOST_STATUSES)

    def ensure_host(self, name, subnet=None, fleet_range=DEFAULT_FLEET_RANGE, **fields):
        """Make ``name`` a Docker host of the fleet, with a /24 of its own: ``subnet`` when given (it must be
        free), else the one it holds, else the lowest free /24 of ``fleet_range``.  Other fields (address,
        endpoint, cert_fingerprint, cert_not_after, engine_version, status, reason, max_nodes, memory_bytes) are
        set as given.  Returns (before, after, changed) as host views."""
        from ansible_collections.fenrir.fleet.plugins.module_utils.registry.allocation import free_subnet
        if not isinstance(name, str) or not HOST_NAME_RE.match(name):
            raise RegistryError("a host name is 1-253 characters of letters, digits and _ . : -", label=name,
                                field="name", kind="host")
        fields = self._host_fields(name, {k: v for k, v in fields.items() if v is not None})
        with self._auto():
            row = self._get("host", name)
            changes = dict(fields)
            if subnet is not None:
                try:
                    net = ipaddress.IPv4Network(subnet, strict=True)
                except ValueError as exc:
                    raise RegistryError("subnet %r is not an IPv4 network: %s" % (subnet, exc), label=name,
                                        field="subnet", kind="host")
                if net.prefixlen != 24:
                    raise RegistryError("subnet %s must be a /24" % net, label=name, field="subnet", kind="host")
                if str(net) == DEFAULT_SUBNET:
                    raise RegistryError("subnet %s is the local engine's" % net, label=name, field="subnet",
                                        kind="host")
                holder = self.store.one("SELECT name FROM hosts WHERE subnet_int = ?", (int(net.network_address),))
                if holder is not None and holder["name"] != name:
                    raise RegistryError("subnet %s is already held by host %r" % (net, holder["name"]), label=name,
                                        field="subnet", kind="host")
                if row is not None and row["subnet_int"] is not None and row["subnet"] != str(net):
                    raise RegistryError("holds subnet %s; decommission the host to give it another"
                                        % row["subnet"], label=name, field="subnet", kind="host")
                changes.update(subnet=str(net), subnet_int=int(net.network_address))
            elif row is None or row["subnet_int"] is None:
                found = free_subnet(self.store, fleet_range)
                if found is None:
                    raise RegistryError("the fleet range %s has no free /24 left" % fleet_range, label=name,
                                        field="subnet", kind="host")
                changes.update(subnet=found[0], subnet_int=found[1])
            if row is not None and row["status"] == "decommissioned" and "status" not in fields:
                changes["status"] = "pending"
            record = dict(dict.fromkeys(HOST_COLUMNS), name=name, status="pending")
            record.update(changes)
            before, after, changed = self._put("host", name, record, changes, "add", "update")
        return host_view(before), host_view(after), changed

    def set_host(self, name, **fields):
        """Change fields of a host (see :meth:`ensure_host`); returns whether anything changed."""
        fields = self._host_fields(name, fields)
        with self._auto():
            if self._get("host", name) is None:
                raise RegistryError("is not in the registry", label=name, kind="host")
            return self._put("host", name, None, fields, None, "update")[2]

    def decommission_host(self, name, reason=None):
        """Mark a host decommissioned and free its subnet.  Refused while a live node is on it."""
        with self._auto():
            row = self._get("host", name)
            if row is None:
                return False
            live = self.store.one("SELECT label FROM nodes WHERE docker_host = ? AND status != 'destroyed' LIMIT 1",
                                  (name,))
            if live is not None:
                raise RegistryError("node %r still lives on it; decommission its nodes first" % live["label"],
                                    label=name, kind="host")
            return self._put("host", name, None, dict(status="decommissioned", subnet_int=None,
                                                      reason=clean_reason(reason)), None, "decommission")[2]

    def get_host(self, name):
        return host_view(self._get("host", name))

    def hosts(self, include_decommissioned=True):
        sql = "SELECT * FROM hosts"
        if not include_decommissioned:
            sql += " WHERE status != 'decommissioned'"
        return [host_view(r) for r in self.store.all(sql + " ORDER BY name")]

    # -- tenants
    def put_tenant(self, tenant_id, spec=None, **fields):
        """Create or change a tenant.  ``spec`` (a dict: image, env, ...) is kept encrypted with its digest;
        other fields: prefix, docker_host, container_name, container_id, image, image_id, status, reason,
        exit_code.  Returns (before, after, changed) as tenant views (no spec)."""
        if not isinstance(tenant_id, str) or not TENANT_ID_RE.match(tenant_id):
            raise RegistryError("a tenant id is 1-63 characters of letters, digits and _ . -", label=tenant_id,
                                field="tenant_id", kind="tenant")
        fields = self._fields("tenant", tenant_id, fields, TENANT_FIELDS, TENANT_STATUSES)
        with self._auto():
            row = self._get("tenant", tenant_id)
            changes = dict(fields)
            if spec is not None:
                digest = hashlib.sha256(canonical(spec).encode("utf-8")).hexdigest()
                if row is None or row["spec_digest"] != digest:
                    changes.update(spec=self._encrypt(dict(spec=spec), tenant_id, "tenant"), spec_digest=digest)
            record = dict(dict.fromkeys(TENANT_COLUMNS), tenant_id=tenant_id, status="provisioning")
            record.update(changes)
            before, after, changed = self._put("tenant", tenant_id, record, changes, "create", "update")
        return tenant_view(before), tenant_view(after), changed

    def get_tenant(self, tenant_id):
        return tenant_view(self._get("tenant", tenant_id))

    def get_tenant_spec(self, tenant_id):
        row = self._get("tenant", tenant_id)
        if row is None or row["spec"] is None:
            return None
        return self._decrypt(row["spec"], tenant_id, "tenant")["spec"]

    def destroy_tenant(self, tenant_id, reason=None):
        """Mark a tenant destroyed (its container gone).  Returns (before, after, changed)."""
        with self._auto():
            row = self._get("tenant", tenant_id)
            if row is None:
                return None, None, False
            before, after, changed = self._put("tenant", tenant_id, None, dict(
                status="destroyed", container_id=None, reason=clean_reason(reason) if reason else row["reason"]),
                None, "destroy")
        return tenant_view(before), tenant_view(after), changed

    def tenants(self, include_destroyed=True):
        sql = "SELECT * FROM tenants"
        if not include_destroyed:
            sql += " WHERE status != 'destroyed'"
        return [tenant_view(r) for r in self.store.all(sql + " ORDER BY tenant_id")]

    # -- the provisioner's identity
    def _stored_provisioner(self):
        row = self._get("secret", PROVISIONER)
        if row is None:
            return None
        return base64.b64decode(self._decrypt(row["secret"], PROVISIONER, "secret")["seed"])

    def provisioner_seed(self, create=True):
        """The controller's Ed25519 seed (32 bytes): made on first use (with ``create``) and kept encrypted; None
        when there is none and ``create`` is false."""
        stored = self._stored_provisioner()
        if stored is not None or not create:
            return stored
        return self.ensure_provisioner()[0]

    def ensure_provisioner(self, seed=None):
        """The controller's identity as ``(seed, changed)``: the stored seed, or a fresh one made and kept
        (encrypted) when there is none; a given ``seed`` (the operator's own provisioner identity) replaces
        the stored one when it differs.  The seed is never in an audit entry (only a digest of its
        ciphertext)."""
        if seed is not None and (not isinstance(seed, (bytes, bytearray)) or len(seed) != 32):
            raise RegistryError("the provisioner's seed must be 32 bytes", label=PROVISIONER, field="seed",
                                kind="secret")
        stored = self._stored_provisioner()  # no write lock when nothing is to be written
        if stored is not None and (seed is None or hmac.compare_digest(stored, bytes(seed))):
            return stored, False
        with self._auto():
            stored = self._stored_provisioner()  # another run may have made it meanwhile
            if seed is None:
                if stored is not None:
                    return stored, False
                seed = os.urandom(32)
            elif stored is not None and hmac.compare_digest(stored, bytes(seed)):
                return stored, False
            seed = bytes(seed)
            blob = self._encrypt(dict(seed=base64.b64encode(seed).decode("ascii")), PROVISIONER, "secret")
            self._put("secret", PROVISIONER, dict(name=PROVISIONER, secret=blob), dict(secret=blob), "create",
                      "replace")
        return seed, True
