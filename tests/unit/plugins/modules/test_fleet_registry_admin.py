"""The fleet_registry_admin module as Ansible runs it: copying a registry (SQLite <-> PostgreSQL), rotating its key;
check mode, diff, idempotence, and no secret in any output."""

import os

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry, fingerprint

from modlib import run_module

MODULE = "fleet_registry_admin"


def make_fleet(path):
    """Two nodes with identities; returns the key file beside the registry."""
    with Registry(path, actor="pytest") as reg:
        with reg.transaction():
            for label in ("alpha", "beta"):
                reg.ensure(dict(label=label), Pool())
                reg.ensure_identity(label, os.urandom(32))
    return os.path.join(os.path.dirname(path), "fleet.key")


def read(path):
    with open(path, "rb") as fh:
        return fh.read().strip()


def no_secret(proc, *secrets):
    out = proc.stdout + proc.stderr
    for secret in secrets:
        assert secret not in out


def test_copy_into_postgresql_then_idempotent(tmp_path, pg_loc):
    src = str(tmp_path / "fleet.db")
    key = make_fleet(src)
    proc, plan = run_module(tmp_path, MODULE, check_mode=True, diff=True, state="copied", registry=src,
                            target=pg_loc, key_file=key)
    assert proc.returncode == 0 and plan["changed"] is True and plan["audit_head"] is None, plan
    assert plan["diff"]["before"]["records"] == {} and plan["diff"]["after"]["records"]["nodes"] == 2
    proc, done = run_module(tmp_path, MODULE, diff=True, state="copied", registry=src, target=pg_loc, key_file=key)
    assert proc.returncode == 0 and done["changed"] is True and done["ok"] is True, done
    assert done["copied"]["nodes"] == 2 and done["entries"] == done["copied"]["audit"] + 1
    assert done["former_locations"] == [src] and done["key_fingerprint"] == fingerprint(read(key))
    assert done["target"] == pg_loc and done["audit_head"]["height"] == done["entries"]
    no_secret(proc, read(key).decode())
    proc, again = run_module(tmp_path, MODULE, state="copied", registry=src, target=pg_loc, key_file=key)
    assert proc.returncode == 0 and again["changed"] is False and again["audit_head"] == done["audit_head"]
    with Registry(pg_loc, key_file=key) as reg:
        assert reg.get_seed("alpha") is not None and reg.verify()["ok"]


def test_a_password_in_a_dsn_is_never_shown(tmp_path, pg_loc):
    src = str(tmp_path / "fleet.db")
    key = make_fleet(src)
    with_password = pg_loc.replace("postgres@", "postgres:not-the-password-x1@")
    proc, res = run_module(tmp_path, MODULE, state="copied", registry=src, target=with_password, key_file=key)
    assert proc.returncode != 0 and "password authentication failed" in res["msg"]
    assert "postgres:***@" in res["target"] and "PGPASSWORD" in res["msg"]
    no_secret(proc, "not-the-password-x1")


def test_rekey_in_place_with_check_mode_and_diff(tmp_path):
    db = str(tmp_path / "fleet.db")
    key = make_fleet(db)
    old = read(key)
    proc, plan = run_module(tmp_path, MODULE, check_mode=True, diff=True, state="rekeyed", registry=db)
    assert proc.returncode == 0 and plan["changed"] is True and plan["records"] == 2, plan
    assert plan["key_fingerprint"] is None and plan["diff"]["after"]["key_fingerprint"] == "(a new key)"
    assert read(key) == old
    proc, done = run_module(tmp_path, MODULE, diff=True, state="rekeyed", registry=db)
    new = read(key)
    assert proc.returncode == 0 and done["changed"] is True and new != old, done
    assert done["key_file"] == key and done["key_fingerprint"] == fingerprint(new)
    assert done["previous_key_fingerprint"] == fingerprint(old) and done["finished_interrupted"] is False
    assert done["diff"]["before"]["key_fingerprint"] == fingerprint(old)
    no_secret(proc, old.decode(), new.decode())
    proc, audit = run_module(tmp_path, "fleet_audit", registry=db, expect_head=done["audit_head"])
    assert proc.returncode == 0 and audit["ok"] is True and audit["audit_head"] == done["audit_head"], audit


def test_options_of_the_other_state_are_refused(tmp_path):
    db = str(tmp_path / "fleet.db")
    make_fleet(db)
    proc, res = run_module(tmp_path, MODULE, state="rekeyed", registry=db, target=str(tmp_path / "x.db"))
    assert proc.returncode != 0 and "field 'target': only for state=copied" in res["msg"]
    proc, res = run_module(tmp_path, MODULE, state="copied", registry=db)
    assert proc.returncode != 0 and "target" in res["msg"]


def test_audit_head_kept_elsewhere_finds_a_rollback(tmp_path):
    import shutil
    db = str(tmp_path / "fleet.db")
    make_fleet(db)
    backup = str(tmp_path / "backup.db")
    shutil.copy(db, backup)
    with Registry(db) as reg:
        with reg.transaction():
            reg.ensure(dict(label="gamma"), Pool())
    proc, seen = run_module(tmp_path, "fleet_audit", registry=db)
    assert proc.returncode == 0 and seen["audit_head"]["height"] == 5
    shutil.copy(backup, db)                                   # restored from an older copy, anchor included
    proc, plain = run_module(tmp_path, "fleet_audit", registry=db)
    assert proc.returncode == 0 and plain["ok"] is True       # nothing inside the database can see it
    proc, res = run_module(tmp_path, "fleet_audit", registry=db, expect_head=seen["audit_head"])
    assert proc.returncode != 0 and "rolled back" in res["msg"] and res["height"] == 5
    proc, res = run_module(tmp_path, "fleet_audit", registry=db, expect_head=dict(height=1, hash="0" * 64))
    assert proc.returncode != 0 and "audit entry 1 is not the one recorded" in res["msg"]
    proc, res = run_module(tmp_path, "fleet_audit", registry=db, expect_head=dict(height=1, hash="nope"))
    assert proc.returncode != 0 and "field 'expect_head'" in res["msg"]
