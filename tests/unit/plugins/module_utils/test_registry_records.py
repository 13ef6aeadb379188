"""Tenants and the provisioner's identity: records beside the nodes, encrypted where they hold secrets, audited
with their kind, refused when edited behind the registry's back."""

import json

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import RegistryError

from registry_testlib import edit, open_reg, sql

SPEC = dict(image="busybox", env=dict(API_TOKEN="t0ps3cr3t"), command=["sleep", "60"])


@pytest.fixture
def reg(loc):
    with open_reg(loc) as r:
        yield r


def test_tenant_lifecycle(reg, loc):
    before, after, changed = reg.put_tenant("acme", spec=SPEC, prefix="landlord", container_name="landlord-tenant-acme")
    assert before is None and changed and after["status"] == "provisioning" and after["has_spec"]
    assert "spec" not in after and len(after["spec_digest"]) == 64
    assert reg.put_tenant("acme", spec=SPEC)[2] is False                    # same spec: no change
    assert reg.put_tenant("acme", status="running", container_id="c1")[2] is True
    assert reg.put_tenant("acme", status="failed", exit_code=137, reason="OOM killed")[1]["exit_code"] == 137
    assert reg.get_tenant_spec("acme") == SPEC
    blob = sql(loc, "SELECT spec FROM tenants")[0]["spec"]
    assert b"t0ps3cr3t" not in bytes(blob) and "t0ps3cr3t" not in json.dumps(reg.audit_entries())
    assert reg.destroy_tenant("acme", reason="gone")[1]["status"] == "destroyed"
    assert reg.destroy_tenant("nobody") == (None, None, False)
    assert [t["tenant_id"] for t in reg.tenants()] == ["acme"] and reg.tenants(include_destroyed=False) == []
    assert {e["kind"] for e in reg.audit_entries()} == {"tenant"}
    assert reg.verify()["ok"] is True


@pytest.mark.parametrize("args, field", [
    (dict(tenant_id="bad id"), "tenant_id"),
    (dict(tenant_id="ok", status="bogus"), "status"),
])
def test_tenant_input_is_checked(reg, args, field):
    with pytest.raises(RegistryError) as err:
        reg.put_tenant(**args)
    assert err.value.field == field and err.value.kind == "tenant" and "tenant " in str(err.value)
    with pytest.raises(RegistryError, match="unknown fields"):
        reg.put_tenant("ok", colour="red")


def test_a_tenant_edited_behind_the_registrys_back_is_refused(reg, loc):
    reg.put_tenant("acme", spec=SPEC)
    edit(loc, "UPDATE tenants SET image = 'evil' WHERE tenant_id = 'acme'")
    with pytest.raises(RegistryError) as err:
        reg.put_tenant("acme", status="running")
    assert "tenant 'acme'" in str(err.value) and "changed outside the registry" in str(err.value)
    result = reg.verify()
    assert result["ok"] is False and result["label"] == "acme" and "image" in result["problem"]
    with reg.transaction():
        assert reg.accept_external_change("acme", kind="tenant") is True
    assert reg.verify()["ok"] is True


def test_provisioner_seed_is_made_once_and_kept_encrypted(reg, loc):
    assert reg.provisioner_seed(create=False) is None
    seed = reg.provisioner_seed()
    assert len(seed) == 32 and reg.provisioner_seed() == seed
    with open_reg(loc) as again:
        assert again.provisioner_seed(create=False) == seed
    assert seed not in bytes(sql(loc, "SELECT secret FROM registry_secrets")[0]["secret"])
    assert [(e["kind"], e["action"], e["label"]) for e in reg.audit_entries()] == [("secret", "create", "provisioner")]
    assert reg.verify()["ok"] is True


def test_operator_provisioner_identity_replaces_the_made_one_and_is_never_in_the_audit(reg, loc):
    made, changed = reg.ensure_provisioner()
    assert changed and len(made) == 32
    assert reg.ensure_provisioner() == (made, False) and reg.ensure_provisioner(made) == (made, False)
    own = bytes(range(32))
    assert reg.ensure_provisioner(own) == (own, True)
    assert reg.provisioner_seed() == own and reg.ensure_provisioner(own) == (own, False)
    with open_reg(loc) as again:
        assert again.provisioner_seed(create=False) == own
    entries = reg.audit_entries()
    assert [(e["kind"], e["action"]) for e in entries] == [("secret", "create"), ("secret", "replace")]
    text = json.dumps(entries)
    for secret in (made, own):
        assert secret.hex() not in text and secret not in bytes(sql(loc, "SELECT secret FROM registry_secrets")[0]["secret"])
    assert reg.verify()["ok"]
    with pytest.raises(RegistryError, match="32 bytes"):
        reg.ensure_provisioner(b"short")
