"""Moving a fleet's memory: SQLite -> PostgreSQL -> SQLite, every record, secret and audit entry, verified; and
the registry read without its key (inventory, drift) on both backends."""

import os

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    RegistryError, check_readable, copy_registry, read_nodes, registry_exists)

from registry_testlib import alloc, lifecycle, open_reg, sql

TABLES = ("nodes", "held_runs", "hosts", "tenants", "registry_secrets", "audit")
OWN_META = ("schema_version", "scrub_pending", "audit_head", "former_locations")  # each registry's own


def contents(loc):
    """Every row, the copies' own ``copy`` entries and meta left out."""
    out = {t: sql(loc, "SELECT * FROM %s" % t) for t in TABLES}
    out["audit"] = [r for r in out["audit"] if not (r["kind"] == "registry" and r["action"] == "copy")]
    for rows in out.values():
        rows.sort(key=lambda r: sorted((k, str(v)) for k, v in r.items()))
    out["meta"] = sorted((r["key"], r["value"]) for r in sql(loc, "SELECT * FROM registry_meta")
                         if r["key"] not in OWN_META)
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
    assert first["ok"] and first["changed"] and first["copied"]["audit"] == 10 and first["entries"] == 11
    assert first["source_head"]["height"] == 10 and first["audit_head"]["height"] == 11
    assert first["former_locations"] == [src] and first["key_fingerprint"]
    back = str(tmp_path / "back" / "fleet.db")
    second = copy_registry(pg_loc, back, key_file=key)
    assert second["entries"] == 12 and second["former_locations"] == [src, first["target"]]
    assert contents(src) == contents(pg_loc) == contents(back)
    for loc in (pg_loc, back):
        with open_reg(loc, key_file=key) as reg:
            assert reg.verify()["ok"] is True
            copy = reg.audit_entries()[-1]
            assert (copy["action"], copy["kind"], copy["label"]) == ("copy", "registry", None)
            assert reg.get_seed("b") is not None and reg.get_tenant_spec("t1") == dict(env=dict(PASSWORD="x"))
            assert alloc(reg, "c")["ip"] == "172.21.0.12"
    with open_reg(back, key_file=key) as reg:
        assert reg.former_locations() == [src, first["target"]]
    assert "PASSWORD" not in str(first) + str(second)


def test_copying_again_is_idempotent_until_the_source_moves_on(tmp_path, loc):
    src = str(tmp_path / "src.db")
    populate(src)
    key = str(tmp_path / "fleet.key")
    first = copy_registry(src, loc, key_file=key)
    again = copy_registry(src, loc, key_file=key)
    assert first["changed"] is True and again["changed"] is False and again["ok"] is True
    assert again["audit_head"] == first["audit_head"]
    with open_reg(loc, key_file=key) as reg:   # the copy is used: still the same copy of the same source
        alloc(reg, "c")
    assert copy_registry(src, loc, key_file=key)["changed"] is False
    with open_reg(src) as reg:                  # the source is written after the copy: they diverged
        alloc(reg, "d")
    with pytest.raises(RegistryError, match="diverged") as err:
        copy_registry(src, loc, key_file=key)
    assert err.value.field == "target"


def test_check_mode_writes_nothing(tmp_path, pg_loc):
    src = str(tmp_path / "src.db")
    populate(src)
    key = str(tmp_path / "fleet.key")
    target = str(tmp_path / "copy" / "fleet.db")
    for where in (target, pg_loc):
        plan = copy_registry(src, where, key_file=key, check_mode=True)
        assert plan["changed"] is True and plan["copied"]["nodes"] == 2 and plan["entries"] == 11
    assert not os.path.exists(os.path.dirname(target))
    assert sql(pg_loc, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()") == []


def test_a_copy_needs_an_empty_target_and_a_source_that_verifies(tmp_path, loc):
    src = str(tmp_path / "src.db")
    populate(src)
    key = str(tmp_path / "fleet.key")
    with open_reg(loc, key_file=key) as reg:
        alloc(reg, "x")
    with pytest.raises(RegistryError, match="not empty .*no copy of this source"):
        copy_registry(src, loc, key_file=key)
    with pytest.raises(RegistryError, match="same registry"):
        copy_registry(src, src, key_file=key)
    sql(src, "UPDATE nodes SET location = 'moved' WHERE label = 'a'")
    with pytest.raises(RegistryError, match="does not verify"):
        copy_registry(src, str(tmp_path / "other.db"), key_file=key)
    assert not os.path.exists(str(tmp_path / "other.db"))


def test_a_copy_without_the_key_is_refused(tmp_path, pg_loc, monkeypatch):
    src = str(tmp_path / "src.db")
    populate(src)
    os.rename(str(tmp_path / "fleet.key"), str(tmp_path / "elsewhere.key"))
    with pytest.raises(RegistryError, match="needs its key") as err:
        copy_registry(src, pg_loc)
    assert err.value.field == "key_file" and "create_key" in str(err.value)


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
