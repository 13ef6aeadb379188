"""tenant_store.py: the four-method store the tenant modules are written against, its in-memory
implementation, and how a registry is named on a container."""

import os

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_store import (
    RECORD_FIELDS, MemoryTenantStore, TenantStore, TenantStoreError, open_store, record_changed, registry_location)


def record(tenant_id="acme", **changes):
    base = dict(tenant_id=tenant_id, prefix="fenrir", docker_host="unix:///var/run/docker.sock",
                container_name="fenrir-tenant-" + tenant_id, container_id="c1", image="app:1", image_id="sha256:aa",
                spec_digest="d1", spec={"tenant_id": tenant_id}, status="running", reason=None, exit_code=None)
    base.update(changes)
    return base


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        self.now += 1
        return self.now


def test_the_interface_is_exactly_four_methods():
    public = sorted(n for n in vars(TenantStore) if not n.startswith("_"))
    assert public == ["destroy_tenant", "get_tenant", "put_tenant", "tenants"]
    with pytest.raises(NotImplementedError):
        TenantStore().tenants()


def test_put_get_destroy_and_history():
    store = MemoryTenantStore(clock=Clock())
    assert store.get_tenant("acme") is None
    first = store.put_tenant(record())
    assert first["created_at"] == first["updated_at"] == 1001.0
    second = store.put_tenant(record(status="failed", reason="exited with code 3", exit_code=3))
    assert second["created_at"] == 1001.0 and second["updated_at"] == 1002.0
    gone = store.destroy_tenant("acme", "bye")
    assert (gone["status"], gone["container_id"], gone["reason"]) == ("destroyed", None, "bye")
    assert store.get_tenant("acme")["status"] == "destroyed"  # destroyed records stay readable
    assert store.destroy_tenant("nobody", "bye") is None
    assert [(a, t, (b or {}).get("status"), c["status"]) for a, t, b, c in store.history] == [
        ("put", "acme", None, "running"), ("put", "acme", "running", "failed"), ("destroy", "acme", "failed",
                                                                                 "destroyed")]
    store.put_tenant(record("beta"))
    assert [r["tenant_id"] for r in store.tenants()] == ["acme", "beta"]


def test_records_are_copies():
    store = MemoryTenantStore([record()])
    got = store.get_tenant("acme")
    got["spec"]["tenant_id"] = "changed"
    assert store.get_tenant("acme")["spec"]["tenant_id"] == "acme"


def test_put_refuses_incomplete_records_and_destroyed_status():
    store = MemoryTenantStore()
    with pytest.raises(TenantStoreError, match="lacks image"):
        store.put_tenant({k: v for k, v in record().items() if k != "image"})
    with pytest.raises(TenantStoreError, match="destroy_tenant destroys"):
        store.put_tenant(record(status="destroyed"))


def test_what_counts_as_a_change():
    before = MemoryTenantStore([record()]).get_tenant("acme")
    assert not record_changed(before, record())
    assert not record_changed(before, record(spec=None))  # a store seeded from Docker does not know the spec
    assert record_changed(before, record(status="failed"))
    assert record_changed(before, record(container_id="c2"))
    assert record_changed(None, record())
    assert set(RECORD_FIELDS) >= {"spec", "status", "exit_code", "spec_digest"}


def test_registry_location():
    assert registry_location("state/fleet.db") == os.path.abspath("state/fleet.db")
    assert registry_location("postgresql://fleet:s3cret@db.internal:5432/fleet?sslmode=require") == \
        "postgresql://fleet@db.internal:5432/fleet"
    with pytest.raises(FleetError, match="postgresql://"):
        registry_location("mysql://x/y")
    with pytest.raises(FleetError, match="field 'registry'"):
        registry_location("")


def test_open_store_is_the_stand_in_until_the_registry_lands():
    store, persisted = open_store("/tmp/fleet.db", observed=[record()])
    assert persisted is False
    assert isinstance(store, TenantStore) and store.get_tenant("acme")["status"] == "running"
