"""Moving a fleet's memory: SQLite -> PostgreSQL -> SQLite, every record, secret and audit entry, verified; and
the registry read without its key (inventory, drift) on both backends."""

import os

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    RegistryError, check_readable, copy_registry, read_nodes, registry_exists)

from registry_testlib import alloc, lifecycle, open_reg, sql

TABLES = ("nodes", "held_runs", "hosts", "tenants", "registry_secrets", "audit")


def contents(loc):
    out = {t: sql(loc, "SELECT * FROM %s" % t) for t in TABLES}
    for rows in out.values():
        rows.sort(key=lambda r: sorted((k, str(v)) for k, v in r.items()))
    out["meta"] = sorted((r["key"], r["value"]) for r in sql(loc, "SELECT * FROM registry_meta")
                         if r["key"] not in ("schema_version", "scrub_pending"))
    return out


def populate(loc):
    with open_reg(loc) as reg:
        lifecycle(reg)
        reg.ensure_host("h1", address="10.0.0.2", status="connected")
        reg.put_tenant("t1", spec=dict(env=dict(PASSWORD="x")), status="running")
        reg.provisioner_seed()


def test_sqlite_to_postgresql_and_back(tmp_path, pg_loc):
    src = str(tmp_path / "fleet.db")
    populate(src)
    key = str(tmp_path / "fleet.key")          # the SQLite registry's key beside it: the copy needs the same
    first = copy_registry(src, pg_loc, key_file=key)
    assert first["ok"] and first["copied"]["audit"] == first["entries"] == 10
    back = str(tmp_path / "back" / "fleet.db")
    copy_registry(pg_loc, back, key_file=key)
    assert contents(src) == contents(pg_loc) == contents(back)
    for loc in (pg_loc, back):
        with open_reg(loc, key_file=key) as reg:
            assert reg.verify()["ok"] is True
            assert reg.get_seed("b") is not None and reg.get_tenant_spec("t1") == dict(env=dict(PASSWORD="x"))
            assert alloc(reg, "c")["ip"] == "172.21.0.12"


def test_a_copy_needs_an_empty_target_and_a_source_that_verifies(tmp_path, loc):
    src = str(tmp_path / "src.db")
    populate(src)
    key = str(tmp_path / "fleet.key")
    with open_reg(loc, key_file=key) as reg:
        alloc(reg, "x")
    with pytest.raises(RegistryError, match="not empty"):
        copy_registry(src, loc, key_file=key)
    sql(src, "UPDATE nodes SET location = 'moved' WHERE label = 'a'")
    with pytest.raises(RegistryError, match="does not verify"):
        copy_registry(src, str(tmp_path / "other.db"), key_file=key)
    assert not os.path.exists(str(tmp_path / "other.db"))


def test_read_without_the_key(loc, monkeypatch):
    with pytest.raises(RegistryError) as err:
        check_readable(loc)
    assert err.value.field == "registry"
    assert registry_exists(loc) is False
    with open_reg(loc) as reg:
        alloc(reg, "a")
        alloc(reg, "b")
        with reg.transaction():
            reg.destroy("b")
    monkeypatch.delenv("FENRIR_REGISTRY_KEY_FILE", raising=False)
    assert registry_exists(loc) is True
    check_readable(loc)
    assert [(n["label"], n["address_held"]) for n in read_nodes(loc)] == [("a", True)]
    assert [n["label"] for n in read_nodes(loc, include_destroyed=True)] == ["a", "b"]
    assert "secrets" not in read_nodes(loc)[0]


def test_callers_take_either_location(loc):
    """The drift report, the audit and the fleet_registry logic work on a path and on a DSN alike, and show a DSN
    without its password."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible_collections.fenrir.fleet.plugins.module_utils import drift, fleet_registry
    params = ArgumentSpecValidator(**fleet_registry.ARGUMENT_SPEC).validate(
        dict(registry=loc, label="a", location="eu")).validated_parameters
    result = fleet_registry.run(params, check_mode=False)
    assert result["changed"] and result["node"]["ip"] == "172.21.0.10" and result["node"]["has_identity"]
    assert [n["label"] for n in drift.read_nodes(loc)] == ["a"]
    verdict = drift.audit(loc)
    assert verdict["ok"] is True and verdict["entries"] == 3 and verdict["registry"] == result["registry"]
    released = drift.release_stale(loc, drift.read_nodes(loc), ["a"], 0, now=1e12)[0]
    assert released == ["a"] and drift.audit(loc)["ok"] is True
