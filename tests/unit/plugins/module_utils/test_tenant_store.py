"""tenant_store.py: the tenant modules' records in the fleet registry, on SQLite and on PostgreSQL -- kept, read
back by another registry handle, planned on a private copy in check mode, every change in the audit chain."""

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry, RegistryError
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_store import is_live, open_store

SPEC = {"tenant_id": "acme", "containers": [{"name": "app", "image": "app:1", "env": {"API_TOKEN": "s3cret-value"}}]}


def fields(**changes):
    base = dict(prefix="fenrir", docker_host="unix:///var/run/docker.sock", container_name="fenrir-tenant-acme",
                container_id="c1", image="app:1", image_id="sha256:aa", status="running", reason=None, exit_code=None)
    base.update(changes)
    return base


def test_records_are_kept_audited_and_known_to_another_handle(loc):
    with open_store(loc) as store:
        assert store.get_tenant("acme") is None
        with store.transaction():
            created, changed = store.put_tenant("acme", spec=SPEC, **fields(status="provisioning", container_id=None))
        assert changed and created["status"] == "provisioning" and created["has_spec"]
        assert store.put_tenant("acme", spec=SPEC, **fields(status="provisioning", container_id=None)) == (
            created, False)  # the same record again: no change, no audit entry
        failed, changed = store.put_tenant("acme", **fields(status="failed", reason="exited with code 3", exit_code=3))
        assert changed and (failed["status"], failed["exit_code"], failed["spec_digest"]) == (
            "failed", 3, created["spec_digest"])  # no spec given: the one kept stays
        gone, changed = store.destroy_tenant("acme", "destroyed by a test")
        assert changed and (gone["status"], gone["container_id"], gone["reason"]) == (
            "destroyed", None, "destroyed by a test")
        assert store.destroy_tenant("nobody", "bye") == (None, False)
        assert not is_live(gone) and is_live(failed)
    with Registry(loc, actor="another controller") as reg:  # another process would see the same
        assert reg.get_tenant("acme")["status"] == "destroyed"
        assert reg.get_tenant_spec("acme") == SPEC  # kept encrypted, readable with the key
        entries = [(e["action"], e["kind"], e["label"]) for e in reg.audit_entries()]
        assert entries[-3:] == [("create", "tenant", "acme"), ("update", "tenant", "acme"),
                                ("destroy", "tenant", "acme")]
        assert reg.verify()["ok"]


def test_check_mode_plans_on_a_private_copy(loc):
    with open_store(loc) as store:
        store.put_tenant("acme", spec=SPEC, **fields())
    with open_store(loc, check_mode=True) as store:
        planned, changed = store.put_tenant("beta", spec=dict(SPEC, tenant_id="beta"), **fields(
            container_name="fenrir-tenant-beta"))
        assert changed and planned["status"] == "running"
        assert store.destroy_tenant("acme", "planned")[0]["status"] == "destroyed"
        assert [t["tenant_id"] for t in store.tenants()] == ["acme", "beta"]  # each write sees the ones before
    with open_store(loc) as store:
        assert [(t["tenant_id"], t["status"]) for t in store.tenants()] == [("acme", "running")]


def test_a_bad_status_is_refused_naming_the_tenant(loc):
    with open_store(loc) as store:
        with pytest.raises(RegistryError, match="tenant 'acme', field 'status'"):
            store.put_tenant("acme", **fields(status="exploded"))
        assert store.tenants() == []
