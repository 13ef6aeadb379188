"""The fleet registry (fleet.db): allocation, pinned addresses, pools, destroy, check mode,
encrypted secrets and the audit chain -- against real SQLite files in a temporary directory."""

import base64
import glob
import ipaddress
import json
import os
import sqlite3

import pytest
from cryptography.fernet import Fernet

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    SCHEMA_VERSION, Pool, Registry, RegistryError,
)

from registry_testlib import POOL, alloc, open_reg


def ip_int_of(path, label):
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT ip_int FROM nodes WHERE label = ?", (label,)).fetchone()
    finally:
        conn.close()
    return row[0] if row else "no row"


def raw_rows(path, sql, args=()):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def db_files_bytes(path):
    """The raw bytes of fleet.db and every companion file (-wal, -shm, -journal) present now."""
    out = {}
    for name in glob.glob(path + "*"):
        if name == path or name[len(path):] in ("-wal", "-shm", "-journal"):
            with open(name, "rb") as fh:
                out[name] = fh.read()
    assert path in out
    return out


def encodings_of(secret):
    return [
        secret,
        secret.hex().encode(), secret.hex().upper().encode(),
        base64.b64encode(secret), base64.urlsafe_b64encode(secret),
        base64.b64encode(secret).rstrip(b"="), base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


# --------------------------------------------------------------------------- allocation

def test_first_allocation_is_pool_start_and_next_is_following(db):
    with open_reg(db) as reg:
        a = alloc(reg, "alpha")
        b = alloc(reg, "beta")
        c = alloc(reg, "gamma")
    assert (a["ip"], b["ip"], c["ip"]) == ("172.21.0.10", "172.21.0.11", "172.21.0.12")
    assert a["status"] == "provisioning" and a["server_id"] == "fenrir-alpha"
    assert ip_int_of(db, "beta") == int(ipaddress.IPv4Address("172.21.0.11"))


def test_gap_left_by_destroy_is_reused_first(db):
    with open_reg(db) as reg:
        for label in ("a", "b", "c", "d"):
            alloc(reg, label)
        with reg.transaction():
            reg.destroy("b")
        assert alloc(reg, "e")["ip"] == "172.21.0.11"
        assert alloc(reg, "f")["ip"] == "172.21.0.14"


def test_gap_at_pool_start_is_found(db):
    with open_reg(db) as reg:
        alloc(reg, "a")
        alloc(reg, "b")
        with reg.transaction():
            reg.destroy("a")
        assert alloc(reg, "c")["ip"] == "172.21.0.10"


def test_label_keeps_its_address_on_every_later_ensure(db):
    with open_reg(db) as reg:
        alloc(reg, "a")
        mine = alloc(reg, "keeper", location="eu-1")["ip"]
        assert mine == "172.21.0.11"
        for i in range(5):
            if i == 2:
                with reg.transaction():
                    reg.destroy("a")
            else:
                alloc(reg, "other-%d" % i)
            with reg.transaction():
                before, after, dummy = reg.ensure(dict(label="keeper", location="eu-%d" % i), POOL)
            assert before["ip"] == after["ip"] == mine
        # a failed node keeps its address too, and so does a reopened registry
        with reg.transaction():
            reg.fail("keeper", "boom")
        assert alloc(reg, "keeper")["ip"] == mine
    with open_reg(db) as reg:
        assert alloc(reg, "keeper")["ip"] == mine
        assert reg.get("keeper")["ip"] == mine


def test_ensure_without_change_reports_unchanged_and_writes_no_audit(db):
    with open_reg(db) as reg:
        alloc(reg, "a", location="x")
        n = len(reg.audit_entries())
        with reg.transaction():
            dummy, dummy2, changed = reg.ensure(dict(label="a", location="x"), POOL)
        assert changed is False
        assert len(reg.audit_entries()) == n


# --------------------------------------------------------------------------- pinned addresses

@pytest.mark.parametrize("ip", ["172.21.0.50", "172.21.0.5", "172.21.0.250"])
def test_pinned_ip_is_honoured_even_outside_the_pool(db, ip):
    with open_reg(db) as reg:
        assert alloc(reg, "pinned", ip=ip)["ip"] == ip
        assert ip_int_of(db, "pinned") == int(ipaddress.IPv4Address(ip))
        # and the dynamic allocator never hands it out again
        assert alloc(reg, "next")["ip"] == "172.21.0.10"
        assert alloc(reg, "pinned", ip=ip)["ip"] == ip


def test_pinned_ip_inside_pool_is_skipped_by_allocator(db):
    with open_reg(db) as reg:
        alloc(reg, "p", ip="172.21.0.10")
        assert alloc(reg, "x")["ip"] == "172.21.0.11"


@pytest.mark.parametrize("ip, words", [
    ("10.9.9.9", "outside subnet"),
    ("172.21.1.10", "outside subnet"),
    ("172.21.0.1", "gateway"),
    ("172.21.0.0", "network or broadcast"),
    ("172.21.0.255", "network or broadcast"),
    ("not-an-ip", "not an IPv4 address"),
])
def test_pinned_ip_refused_names_node_and_field(db, ip, words):
    with open_reg(db) as reg:
        with pytest.raises(RegistryError) as err:
            alloc(reg, "bad", ip=ip)
        assert err.value.field == "ip" and err.value.label == "bad"
        assert "node 'bad'" in str(err.value) and "field 'ip'" in str(err.value)
        assert words in str(err.value)
        assert reg.get("bad") is None
        assert reg.audit_entries() == []


def test_pinned_ip_held_by_another_label_refused(db):
    with open_reg(db) as reg:
        alloc(reg, "owner", ip="172.21.0.77")
        with pytest.raises(RegistryError) as err:
            alloc(reg, "thief", ip="172.21.0.77")
        assert err.value.field == "ip" and err.value.label == "thief"
        assert "'owner'" in str(err.value) and "172.21.0.77" in str(err.value)
        assert reg.get("thief") is None
        assert reg.get("owner")["ip"] == "172.21.0.77"


def test_pinned_ip_differing_from_held_address_refused(db):
    with open_reg(db) as reg:
        assert alloc(reg, "a")["ip"] == "172.21.0.10"
        with pytest.raises(RegistryError) as err:
            alloc(reg, "a", ip="172.21.0.99")
        assert err.value.field == "ip" and err.value.label == "a"
        assert "172.21.0.99" in str(err.value) and "172.21.0.10" in str(err.value)
        assert reg.get("a")["ip"] == "172.21.0.10"
        # pinning the address it already holds is fine
        assert alloc(reg, "a", ip="172.21.0.10")["ip"] == "172.21.0.10"


# --------------------------------------------------------------------------- pools

@pytest.mark.parametrize("args, field", [
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.1", "172.21.0.200"), "pool_start"),   # includes the gateway
    (("172.21.0.0/24", "172.21.0.100", "172.21.0.10", "172.21.0.200"), "pool_start"),  # gateway inside
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.200", "172.21.0.10"), "pool_start"),  # start > end
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.0", "172.21.0.10"), "pool_start"),    # network address
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.10", "172.21.0.255"), "pool_end"),    # broadcast
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.10", "172.21.1.10"), "pool_end"),     # outside subnet
    (("172.21.0.0/24", "10.0.0.1", "172.21.0.10", "172.21.0.20"), "gateway"),
    (("172.21.0.5/24", "172.21.0.1", "172.21.0.10", "172.21.0.20"), "subnet"),      # not a network
    (("10.0.0.0/8", "10.0.0.1", "10.0.0.10", "10.0.0.20"), "subnet"),              # too big
    (("bogus", "172.21.0.1", "172.21.0.10", "172.21.0.20"), "subnet"),
])
def test_pool_validation(args, field):
    with pytest.raises(RegistryError) as err:
        Pool(*args)
    assert err.value.field == field


def test_pool_start_after_end_message():
    with pytest.raises(RegistryError, match="after"):
        Pool("172.21.0.0/24", "172.21.0.1", "172.21.0.200", "172.21.0.10")


def test_pool_including_gateway_message():
    with pytest.raises(RegistryError, match="gateway"):
        Pool("172.21.0.0/24", "172.21.0.1", "172.21.0.1", "172.21.0.200")


def test_exhausted_pool_names_node_and_field(db):
    small = Pool("172.21.0.0/24", "172.21.0.1", "172.21.0.10", "172.21.0.12")
    with open_reg(db) as reg:
        got = [alloc(reg, l, small)["ip"] for l in ("a", "b", "c")]
        assert got == ["172.21.0.10", "172.21.0.11", "172.21.0.12"]
        with pytest.raises(RegistryError) as err:
            alloc(reg, "d", small)
        assert err.value.label == "d" and err.value.field == "ip"
        assert "exhausted" in str(err.value) and "node 'd'" in str(err.value)
        assert reg.get("d") is None
        # freeing one address makes room again
        with reg.transaction():
            reg.destroy("b")
        assert alloc(reg, "d", small)["ip"] == "172.21.0.11"


# --------------------------------------------------------------------------- destroy / re-provision

def test_destroy_frees_the_address(db):
    with open_reg(db) as reg:
        alloc(reg, "a")
        with reg.transaction():
            before, after, changed = reg.destroy("a", reason="gone")
        assert changed and before["status"] == "provisioning" and after["status"] == "destroyed"
        assert after["reason"] == "gone"
        n = len(reg.audit_entries())
        with reg.transaction():
            assert reg.destroy("a")[2] is False                # twice: no change ...
            assert reg.destroy("a", reason="gone")[2] is False
            assert reg.destroy("never-was") == (None, None, False)
        assert len(reg.audit_entries()) == n                   # ... and no audit entry
        assert reg.get("a")["reason"] == "gone"
    assert ip_int_of(db, "a") is None
    assert raw_rows(db, "SELECT status FROM nodes WHERE label = 'a'") == [("destroyed",)]
    with open_reg(db) as reg:
        assert alloc(reg, "b")["ip"] == "172.21.0.10"


def test_reprovision_destroyed_label_prefers_old_address_when_free(db):
    with open_reg(db) as reg:
        for label in ("a", "b", "c"):
            alloc(reg, label)
        with reg.transaction():
            reg.destroy("a")
            reg.destroy("c")
        # .10 is the lowest free address, but c gets its own .12 back
        after = alloc(reg, "c")
        assert after["ip"] == "172.21.0.12" and after["status"] == "provisioning"
        assert ip_int_of(db, "c") == int(ipaddress.IPv4Address("172.21.0.12"))


def test_reprovision_destroyed_label_takes_next_free_when_old_address_taken(db):
    with open_reg(db) as reg:
        for label in ("a", "b"):
            alloc(reg, label)
        with reg.transaction():
            reg.destroy("a")
        assert alloc(reg, "intruder")["ip"] == "172.21.0.10"
        assert alloc(reg, "a")["ip"] == "172.21.0.12"


def test_failed_and_released_node_gets_its_address_back(db):
    with open_reg(db) as reg:
        alloc(reg, "a")
        alloc(reg, "b")
        with reg.transaction():
            reg.fail("b", "container did not start", release=True)
        assert ip_int_of(db, "b") is None
        assert alloc(reg, "b")["ip"] == "172.21.0.11"
        assert reg.get("b")["status"] == "provisioning" and reg.get("b")["reason"] is None


# --------------------------------------------------------------------------- check mode

def test_check_mode_on_missing_file_creates_nothing(tmp_path):
    path = str(tmp_path / "fleet.db")
    with open_reg(path, check_mode=True) as reg:
        with reg.transaction():
            dummy, after, changed = reg.ensure(dict(label="a"), POOL)
            seed, id_changed = reg.ensure_identity("a", None, lambda: os.urandom(32))
        assert changed and id_changed and after["ip"] == "172.21.0.10"
    assert os.listdir(str(tmp_path)) == []   # no fleet.db, no -wal, no fleet.key


def test_check_mode_on_existing_file_writes_no_row_and_returns_plan(db):
    with open_reg(db) as reg:
        alloc(reg, "a")
        alloc(reg, "b")
    before_rows = raw_rows(db, "SELECT * FROM nodes ORDER BY label")
    before_audit = raw_rows(db, "SELECT * FROM audit ORDER BY height")
    with open_reg(db, check_mode=True) as reg:
        assert alloc(reg, "c")["ip"] == "172.21.0.12"
        with reg.transaction():
            reg.destroy("a")
            reg.set_fields("b", status="online")
    assert raw_rows(db, "SELECT * FROM nodes ORDER BY label") == before_rows
    assert raw_rows(db, "SELECT * FROM audit ORDER BY height") == before_audit
    assert raw_rows(db, "SELECT count(*) FROM nodes WHERE label = 'c'") == [(0,)]


def test_check_mode_does_not_create_key_file(db, tmp_path):
    with open_reg(db) as reg:
        alloc(reg, "a")               # no identity yet: no key file
    assert not os.path.exists(str(tmp_path / "fleet.key"))
    with open_reg(db, check_mode=True) as reg:
        with reg.transaction():
            reg.ensure_identity("a", None, lambda: os.urandom(32))
    assert not os.path.exists(str(tmp_path / "fleet.key"))
    assert raw_rows(db, "SELECT secrets FROM nodes") == [(None,)]


# --------------------------------------------------------------------------- secrets

def test_seed_never_stored_in_clear(db):
    seed = os.urandom(32)
    other = os.urandom(32)
    with open_reg(db) as reg:
        alloc(reg, "a")
        alloc(reg, "b")
        with reg.transaction():
            reg.ensure_identity("a", seed)
            reg.ensure_identity("b", other)
        with reg.transaction():
            reg.ensure_identity("b", os.urandom(32))   # replaced: the old one must not linger either
        open_files = db_files_bytes(db)
    closed_files = db_files_bytes(db)
    for files in (open_files, closed_files):
        for name, data in files.items():
            for secret in (seed, other):
                for enc in encodings_of(secret):
                    assert enc not in data, "seed found (%r) in %s" % (enc[:8], name)
    assert any(name.endswith("-wal") for name in open_files)   # the grep did see the WAL


def test_get_seed_round_trips_and_identity_is_stable(db):
    seed = os.urandom(32)
    with open_reg(db) as reg:
        alloc(reg, "a")
        with reg.transaction():
            assert reg.ensure_identity("a", seed) == (seed, True)
            assert reg.ensure_identity("a", seed) == (seed, False)
            assert reg.ensure_identity("a", None, lambda: pytest.fail("must not generate")) == (seed, False)
        assert reg.get("a")["has_identity"] is True
        assert "secrets" not in reg.get("a")
    with open_reg(db) as reg:
        assert reg.get_seed("a") == seed
        alloc(reg, "b")
        assert reg.get_seed("b") is None
        assert reg.get_seed("nobody") is None
    assert oct(os.stat(os.path.join(os.path.dirname(db), "fleet.key")).st_mode & 0o777) == "0o600"
    assert oct(os.stat(db).st_mode & 0o777) == "0o600"


def test_wrong_key_file_is_reported_as_key_file(db, tmp_path):
    with open_reg(db) as reg:
        alloc(reg, "a")
        with reg.transaction():
            reg.ensure_identity("a", os.urandom(32))
    wrong = tmp_path / "other.key"
    wrong.write_bytes(Fernet.generate_key() + b"\n")
    with open_reg(db, key_file=str(wrong)) as reg:
        with pytest.raises(RegistryError) as err:
            reg.get_seed("a")
        assert err.value.field == "key_file" and err.value.label == "a"
        assert str(wrong) in str(err.value)
        with pytest.raises(RegistryError) as err:
            with reg.transaction():
                reg.ensure_identity("a", None, lambda: os.urandom(32))
        assert err.value.field == "key_file"


def test_garbage_or_missing_key_file(db, tmp_path):
    with open_reg(db) as reg:
        alloc(reg, "a")
        with reg.transaction():
            reg.ensure_identity("a", os.urandom(32))
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"not a fernet key\n")
    with open_reg(db, key_file=str(garbage)) as reg:
        with pytest.raises(RegistryError) as err:
            reg.get_seed("a")
        assert err.value.field == "key_file"
    with open_reg(db, key_file=str(tmp_path / "missing.key")) as reg:
        with pytest.raises(RegistryError) as err:
            reg.get_seed("a")
        assert err.value.field == "key_file" and "missing" in str(err.value)
    assert not (tmp_path / "missing.key").exists()


# --------------------------------------------------------------------------- status

def test_status_validation(db):
    with open_reg(db) as reg:
        alloc(reg, "a")
        with reg.transaction():
            assert reg.set_fields("a", status="online") is True
            assert reg.set_fields("a", status="online") is False
            for status in ("running", "failed", "provisioning"):
                reg.set_fields("a", status=status)
        for bad in ("bogus", "ONLINE", "", None):
            with pytest.raises(RegistryError) as err:
                with reg.transaction():
                    reg.set_fields("a", status=bad)
            assert err.value.field == "status" and err.value.label == "a"
        with pytest.raises(RegistryError) as err:
            with reg.transaction():
                reg.set_fields("a", status="destroyed")
        assert err.value.field == "status" and "destroy()" in str(err.value)
        with pytest.raises(RegistryError, match="unknown fields ip_int"):
            with reg.transaction():
                reg.set_fields("a", ip_int=5)
        with pytest.raises(RegistryError, match="not in the registry"):
            with reg.transaction():
                reg.set_fields("ghost", status="online")
        assert reg.get("a")["status"] == "provisioning"
    # the table refuses an unknown status even behind the registry's back
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE nodes SET status = 'bogus' WHERE label = 'a'")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE nodes SET status = 'destroyed' WHERE label = 'a'")   # still holds an address
    conn.close()


# --------------------------------------------------------------------------- audit chain

def _lifecycle(reg):
    alloc(reg, "a", location="x")
    alloc(reg, "b")
    alloc(reg, "a", location="x")                 # no change, no entry
    with reg.transaction():
        reg.set_fields("a", status="online")
        reg.ensure_identity("b", os.urandom(32))
        reg.destroy("b")
    alloc(reg, "b")
    alloc(reg, "a", location="y")


def test_audit_entry_for_every_change_and_chain_links(db):
    with open_reg(db) as reg:
        _lifecycle(reg)
        entries = reg.audit_entries()
        assert [(e["action"], e["label"]) for e in entries] == [
            ("allocate", "a"), ("allocate", "b"), ("update", "a"), ("identity", "b"),
            ("destroy", "b"), ("allocate", "b"), ("update", "a")]
        assert [e["height"] for e in entries] == list(range(1, 8))
        assert entries[0]["prev_hash"] == "0" * 64
        for prev, e in zip(entries, entries[1:]):
            assert e["prev_hash"] == prev["hash"]
        assert all(e["actor"] == "pytest" for e in entries)
        assert entries[0]["before"] is None
        assert json.loads(entries[-1]["after"])["location"] == "y"
        assert json.loads(entries[-1]["before"])["location"] == "x"
        assert "secrets" not in json.loads(entries[3]["after"])
        assert json.loads(entries[3]["after"])["secrets_sha256"]
        assert reg.verify() == dict(ok=True, entries=7, problem=None, height=None, label=None)
    with open_reg(db) as reg:
        assert reg.verify()["ok"] is True


def test_failed_transaction_leaves_no_audit_entry(db):
    with open_reg(db) as reg:
        alloc(reg, "a")
        with pytest.raises(RegistryError):
            with reg.transaction():
                reg.ensure(dict(label="b"), POOL)          # written ...
                reg.ensure(dict(label="c", ip="10.1.1.1"), POOL)   # ... then refused: all rolled back
        assert reg.get("b") is None
        assert len(reg.audit_entries()) == 1
        assert reg.verify()["ok"]


def test_verify_reports_node_row_edited_behind_the_registrys_back(db):
    with open_reg(db) as reg:
        _lifecycle(reg)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE nodes SET ip = '172.21.0.99' WHERE label = 'a'")
    conn.commit()
    conn.close()
    with open_reg(db) as reg:
        result = reg.verify()
    assert result["ok"] is False and result["label"] == "a"
    assert "'a'" in result["problem"] and "ip" in result["problem"] and "behind" in result["problem"]


def test_verify_reports_row_inserted_behind_the_registrys_back(db):
    with open_reg(db) as reg:
        _lifecycle(reg)
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO nodes (label, server_id, ip, ip_int, created_at, updated_at)"
                 " VALUES ('sneaky', 'fenrir-sneaky', '172.21.0.200', ?, 0, 0)",
                 (int(ipaddress.IPv4Address("172.21.0.200")),))
    conn.commit()
    conn.close()
    with open_reg(db) as reg:
        result = reg.verify()
    assert result["ok"] is False and result["label"] == "sneaky"


def test_verify_reports_row_deleted_behind_the_registrys_back(db):
    with open_reg(db) as reg:
        _lifecycle(reg)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM nodes WHERE label = 'b'")
    conn.commit()
    conn.close()
    with open_reg(db) as reg:
        result = reg.verify()
    assert result["ok"] is False and result["label"] == "b" and "missing" in result["problem"]


@pytest.mark.parametrize("height, sql", [
    (3, "UPDATE audit SET actor = 'mallory' WHERE height = 3"),
    (2, "UPDATE audit SET after = replace(after, '172.21.0.11', '172.21.0.66') WHERE height = 2"),
    (5, "UPDATE audit SET ts = ts + 1 WHERE height = 5"),
    (4, "UPDATE audit SET action = 'update' WHERE height = 4"),
])
def test_verify_reports_first_bad_height_of_edited_audit_row(db, height, sql):
    with open_reg(db) as reg:
        _lifecycle(reg)
    conn = sqlite3.connect(db)
    assert conn.execute(sql).rowcount == 1
    conn.commit()
    conn.close()
    with open_reg(db) as reg:
        result = reg.verify()
    assert result["ok"] is False and result["height"] == height
    assert "audit entry %d" % height in result["problem"]


def test_verify_reports_edited_audit_row_with_recomputed_hash_at_next_height(db):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import entry_hash
    with open_reg(db) as reg:
        _lifecycle(reg)
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    e = conn.execute("SELECT * FROM audit WHERE height = 3").fetchone()
    before = json.loads(e["before"])
    after = json.loads(e["after"])
    forged = entry_hash(3, e["ts"], "mallory", e["action"], e["label"], before, after, e["prev_hash"])
    conn.execute("UPDATE audit SET actor = 'mallory', hash = ? WHERE height = 3", (forged,))
    conn.commit()
    conn.close()
    with open_reg(db) as reg:
        result = reg.verify()
    assert result["ok"] is False and result["height"] == 4 and "prev_hash" in result["problem"]


@pytest.mark.parametrize("height, reported", [(1, 2), (4, 5), (7, None)])
def test_verify_reports_deleted_audit_row(db, height, reported):
    with open_reg(db) as reg:
        _lifecycle(reg)
    conn = sqlite3.connect(db)
    assert conn.execute("DELETE FROM audit WHERE height = ?", (height,)).rowcount == 1
    conn.commit()
    conn.close()
    with open_reg(db) as reg:
        result = reg.verify()
    assert result["ok"] is False
    if reported is not None:
        assert result["height"] == reported and "missing" in result["problem"]
    else:
        # the newest entry is gone: node 'a' no longer matches what the trail says about it
        assert result["label"] == "a" and "differs" in result["problem"]


def test_schema_version_is_set(db):
    with open_reg(db) as reg:
        assert reg.schema_version == SCHEMA_VERSION == 4
    assert raw_rows(db, "PRAGMA journal_mode") == [("wal",)]


def test_not_a_database_is_refused(tmp_path):
    path = tmp_path / "fleet.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(RegistryError) as err:
        open_reg(str(path))
    assert err.value.field == "db"


def test_missing_directory_is_created_private(tmp_path):
    with open_reg(str(tmp_path / "state" / "fleet.db")) as reg:
        alloc(reg, "a")
    assert oct(os.stat(str(tmp_path / "state")).st_mode & 0o777) == "0o700"


def test_directory_that_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RegistryError) as err:
        open_reg(str(tmp_path / "afile" / "sub" / "fleet.db"))
    assert err.value.field == "db"


def test_allocation_keeps_lowest_free_exact(tmp_path):
    """The allocator never hands out an address above a free one of the pool."""
    pool = Pool("10.9.0.0/24", "10.9.0.1", "10.9.0.10", "10.9.0.20")
    with Registry(str(tmp_path / "fleet.db")) as reg:
        with reg.transaction():
            for i in range(6):
                reg.ensure({"label": "n%d" % i}, pool)
            reg.destroy("n4")
            reg.destroy("n1")
        with reg.transaction():
            assert reg.ensure({"label": "x1"}, pool)[1]["ip"] == "10.9.0.11"
            assert reg.ensure({"label": "x2"}, pool)[1]["ip"] == "10.9.0.14"
            assert reg.ensure({"label": "x3"}, pool)[1]["ip"] == "10.9.0.16"
            # A pinned address at the next free one is stepped over.
            reg.ensure({"label": "p", "ip": "10.9.0.17"}, pool)
            assert reg.ensure({"label": "x4"}, pool)[1]["ip"] == "10.9.0.18"
        # the held addresses, as runs: .10-.18 (the pinned one included)
        runs = reg.conn.execute("SELECT run_start, run_end FROM held_runs").fetchall()
        assert [tuple(r) for r in runs] == [(int(ipaddress.IPv4Address("10.9.0.10")),
                                             int(ipaddress.IPv4Address("10.9.0.18")))]
        assert reg.verify()["ok"] is True


def test_schema_2_registry_is_migrated_in_place(tmp_path):
    path = str(tmp_path / "fleet.db")
    pool = Pool("10.9.0.0/24", "10.9.0.1", "10.9.0.10", "10.9.0.20")
    with Registry(path) as reg:
        with reg.transaction():
            reg.ensure({"label": "a"}, pool)
            reg.ensure({"label": "b"}, pool)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE held_runs")     # schema 2: nodes and audit only
    conn.execute("DROP TABLE registry_meta")
    conn.execute("DROP INDEX audit_label")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Registry(path) as reg:
        assert reg.schema_version == SCHEMA_VERSION
        with reg.transaction():
            assert reg.ensure({"label": "c"}, pool)[1]["ip"] == "10.9.0.12"
        assert reg.verify()["ok"]
