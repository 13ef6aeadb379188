"""The fleet registry: allocation, pinned addresses, pools, destroy, check mode, encrypted secrets and the
audit chain -- on both backends (``loc``: a SQLite file, a PostgreSQL schema); what is about the file itself
(its bytes, its mode, its journal) on SQLite only (``db``)."""

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

from registry_testlib import POOL, alloc, destroy, edit, lifecycle, open_reg, sql


def ip_int_of(loc, label):
    rows = sql(loc, "SELECT ip_int FROM nodes WHERE label = ?", label)
    return rows[0]["ip_int"] if rows else "no row"


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


@pytest.fixture
def reg(loc):
    with open_reg(loc) as r:
        yield r


# --------------------------------------------------------------------------- allocation

def test_first_allocation_is_pool_start_and_next_is_following(reg, loc):
    a, b, c = (alloc(reg, label) for label in ("alpha", "beta", "gamma"))
    assert (a["ip"], b["ip"], c["ip"]) == ("172.21.0.10", "172.21.0.11", "172.21.0.12")
    assert a["status"] == "provisioning" and a["server_id"] == "fenrir-alpha"
    assert a["network_mode"] == "bridge" and a["docker_host"] is None and a["port"] is None
    assert ip_int_of(loc, "beta") == int(ipaddress.IPv4Address("172.21.0.11"))


@pytest.mark.parametrize("freed, expect", [(("b",), ["172.21.0.11", "172.21.0.14"]),   # a gap in the middle
                                           (("a",), ["172.21.0.10", "172.21.0.14"])])  # a gap at the pool's start
def test_gap_left_by_destroy_is_reused_first(reg, freed, expect):
    for label in ("a", "b", "c", "d"):
        alloc(reg, label)
    destroy(reg, *freed)
    assert [alloc(reg, "e")["ip"], alloc(reg, "f")["ip"]] == expect


def test_label_keeps_its_address_on_every_later_ensure(reg, loc):
    alloc(reg, "a")
    mine = alloc(reg, "keeper", location="eu-1")["ip"]
    assert mine == "172.21.0.11"
    for i in range(5):
        if i == 2:
            destroy(reg, "a")
        else:
            alloc(reg, "other-%d" % i)
        with reg.transaction():
            before, after, dummy = reg.ensure(dict(label="keeper", location="eu-%d" % i), POOL)
        assert before["ip"] == after["ip"] == mine
    # a failed node keeps its address too, and so does a reopened registry
    with reg.transaction():
        reg.fail("keeper", "boom")
    assert alloc(reg, "keeper")["ip"] == mine
    with open_reg(loc) as again:
        assert alloc(again, "keeper")["ip"] == mine
        assert again.get("keeper")["ip"] == mine


def test_ensure_without_change_reports_unchanged_and_writes_no_audit(reg):
    alloc(reg, "a", location="x")
    n = len(reg.audit_entries())
    with reg.transaction():
        dummy, dummy2, changed = reg.ensure(dict(label="a", location="x"), POOL)
    assert changed is False
    assert len(reg.audit_entries()) == n


# --------------------------------------------------------------------------- pinned addresses

@pytest.mark.parametrize("ip", ["172.21.0.50", "172.21.0.5", "172.21.0.250"])
def test_pinned_ip_is_honoured_even_outside_the_pool(reg, loc, ip):
    assert alloc(reg, "pinned", ip=ip)["ip"] == ip
    assert ip_int_of(loc, "pinned") == int(ipaddress.IPv4Address(ip))
    # and the dynamic allocator never hands it out again
    assert alloc(reg, "next")["ip"] == "172.21.0.10"
    assert alloc(reg, "pinned", ip=ip)["ip"] == ip


def test_pinned_ip_inside_pool_is_skipped_by_allocator(reg):
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
def test_pinned_ip_refused_names_node_and_field(reg, ip, words):
    with pytest.raises(RegistryError) as err:
        alloc(reg, "bad", ip=ip)
    assert err.value.field == "ip" and err.value.label == "bad"
    assert "node 'bad'" in str(err.value) and "field 'ip'" in str(err.value)
    assert words in str(err.value)
    assert reg.get("bad") is None
    assert reg.audit_entries() == []


def test_pinned_ip_held_by_another_label_refused(reg):
    alloc(reg, "owner", ip="172.21.0.77")
    with pytest.raises(RegistryError) as err:
        alloc(reg, "thief", ip="172.21.0.77")
    assert err.value.field == "ip" and err.value.label == "thief"
    assert "'owner'" in str(err.value) and "172.21.0.77" in str(err.value)
    assert reg.get("thief") is None
    assert reg.get("owner")["ip"] == "172.21.0.77"


def test_pinned_ip_differing_from_held_address_refused(reg):
    assert alloc(reg, "a")["ip"] == "172.21.0.10"
    with pytest.raises(RegistryError) as err:
        alloc(reg, "a", ip="172.21.0.99")
    assert err.value.field == "ip" and err.value.label == "a"
    assert "172.21.0.99" in str(err.value) and "172.21.0.10" in str(err.value)
    assert reg.get("a")["ip"] == "172.21.0.10"
    # pinning the address it already holds is fine
    assert alloc(reg, "a", ip="172.21.0.10")["ip"] == "172.21.0.10"


# --------------------------------------------------------------------------- pools

@pytest.mark.parametrize("args, field, words", [
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.1", "172.21.0.200"), "pool_start", "gateway"),   # includes gateway
    (("172.21.0.0/24", "172.21.0.100", "172.21.0.10", "172.21.0.200"), "pool_start", "gateway"),  # gateway inside
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.200", "172.21.0.10"), "pool_start", "after"),  # start > end
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.0", "172.21.0.10"), "pool_start", "host address"),  # network addr
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.10", "172.21.0.255"), "pool_end", "host address"),  # broadcast
    (("172.21.0.0/24", "172.21.0.1", "172.21.0.10", "172.21.1.10"), "pool_end", "host address"),   # outside
    (("172.21.0.0/24", "10.0.0.1", "172.21.0.10", "172.21.0.20"), "gateway", "host address"),
    (("172.21.0.5/24", "172.21.0.1", "172.21.0.10", "172.21.0.20"), "subnet", "not an IPv4 network"),
    (("10.0.0.0/8", "10.0.0.1", "10.0.0.10", "10.0.0.20"), "subnet", "prefix length"),   # too big
    (("bogus", "172.21.0.1", "172.21.0.10", "172.21.0.20"), "subnet", "not an IPv4 network"),
])
def test_pool_validation(args, field, words):
    with pytest.raises(RegistryError) as err:
        Pool(*args)
    assert err.value.field == field and words in str(err.value)


def test_exhausted_pool_names_node_and_field(reg):
    small = Pool("172.21.0.0/24", "172.21.0.1", "172.21.0.10", "172.21.0.12")
    got = [alloc(reg, label, small)["ip"] for label in ("a", "b", "c")]
    assert got == ["172.21.0.10", "172.21.0.11", "172.21.0.12"]
    with pytest.raises(RegistryError) as err:
        alloc(reg, "d", small)
    assert err.value.label == "d" and err.value.field == "ip"
    assert "exhausted" in str(err.value) and "node 'd'" in str(err.value)
    assert reg.get("d") is None
    # freeing one address makes room again
    destroy(reg, "b")
    assert alloc(reg, "d", small)["ip"] == "172.21.0.11"


# --------------------------------------------------------------------------- destroy / re-provision

def test_destroy_frees_the_address(reg, loc):
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
    assert ip_int_of(loc, "a") is None
    assert sql(loc, "SELECT status FROM nodes WHERE label = 'a'") == [{"status": "destroyed"}]
    assert alloc(reg, "b")["ip"] == "172.21.0.10"


@pytest.mark.parametrize("taken, expect", [(False, "172.21.0.12"), (True, "172.21.0.10")])
def test_reprovision_prefers_the_old_address_when_free(reg, taken, expect):
    """.10 is the lowest free address, but c gets its own .12 back -- unless another node took it."""
    for label in ("a", "b", "c"):
        alloc(reg, label)
    destroy(reg, "a", "c")
    if taken:
        assert alloc(reg, "intruder", ip="172.21.0.12")["ip"] == "172.21.0.12"
    after = alloc(reg, "c")
    assert after["ip"] == expect and after["status"] == "provisioning"


def test_failed_and_released_node_gets_its_address_back(reg, loc):
    alloc(reg, "a")
    alloc(reg, "b")
    with reg.transaction():
        reg.fail("b", "container did not start", release=True)
    assert ip_int_of(loc, "b") is None
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
        assert reg.verify()["ok"] is True
    assert os.listdir(str(tmp_path)) == []   # no fleet.db, no -wal, no fleet.key


def test_check_mode_writes_no_row_and_returns_plan(loc):
    with open_reg(loc) as reg:
        alloc(reg, "a")
        alloc(reg, "b")
    before_rows = sql(loc, "SELECT * FROM nodes ORDER BY label")
    before_audit = sql(loc, "SELECT * FROM audit ORDER BY height")
    with open_reg(loc, check_mode=True) as reg:
        assert alloc(reg, "c")["ip"] == "172.21.0.12"
        with reg.transaction():
            reg.destroy("a")
            reg.set_fields("b", status="online")
            reg.ensure_identity("b", None, lambda: os.urandom(32))
        assert reg.verify()["ok"] is True
    assert sql(loc, "SELECT * FROM nodes ORDER BY label") == before_rows
    assert sql(loc, "SELECT * FROM audit ORDER BY height") == before_audit


# --------------------------------------------------------------------------- secrets

def test_seed_never_stored_in_clear(db):
    seed, other = os.urandom(32), os.urandom(32)
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


def test_get_seed_round_trips_and_identity_is_stable(reg, loc, backend):
    seed = os.urandom(32)
    alloc(reg, "a")
    with reg.transaction():
        assert reg.ensure_identity("a", seed) == (seed, True)
        assert reg.ensure_identity("a", seed) == (seed, False)
        assert reg.ensure_identity("a", None, lambda: pytest.fail("must not generate")) == (seed, False)
    assert reg.get("a")["has_identity"] is True
    assert "secrets" not in reg.get("a")
    with open_reg(loc) as again:
        assert again.get_seed("a") == seed
        alloc(again, "b")
        assert again.get_seed("b") is None
        assert again.get_seed("nobody") is None
    if backend == "sqlite":
        for path in (os.path.join(os.path.dirname(loc), "fleet.key"), loc, loc + "-wal"):
            assert oct(os.stat(path).st_mode & 0o777) == "0o600", path


def test_secrets_beside_the_seed(reg):
    alloc(reg, "a")
    with reg.transaction():
        assert reg.ensure_secret("a", "cockpit_token", lambda: "tok-1") == ("tok-1", True)
        assert reg.ensure_secret("a", "cockpit_token", lambda: pytest.fail("kept")) == ("tok-1", False)
        seed, changed = reg.ensure_secret("a", "seed", lambda: b"s" * 32)
    assert (seed, changed) == (b"s" * 32, True)
    assert reg.get_secret("a", "cockpit_token") == "tok-1" and reg.get_seed("a") == b"s" * 32
    actions = [e["action"] for e in reg.audit_entries()]
    assert actions == ["allocate", "secret", "identity"]
    assert "tok-1" not in json.dumps(reg.audit_entries())
    assert reg.verify()["ok"] is True


def test_wrong_key_is_refused_before_anything_is_written(reg, loc, tmp_path):
    alloc(reg, "a")
    with reg.transaction():
        reg.ensure_identity("a", os.urandom(32))
    n = len(reg.audit_entries())
    wrong = tmp_path / "other.key"
    wrong.write_bytes(Fernet.generate_key() + b"\n")
    with open_reg(loc, key_file=str(wrong)) as bad:
        for action in (lambda: bad.get_seed("a"), lambda: alloc(bad, "b"), bad.verify):
            with pytest.raises(RegistryError) as err:
                action()
            assert err.value.field == "key_file"
            assert str(wrong) in str(err.value) and "fingerprint" in str(err.value)
            assert "not the key of the registry" in str(err.value)
    assert len(reg.audit_entries()) == n and reg.get("b") is None


def test_garbage_or_missing_key_file(reg, loc, tmp_path):
    alloc(reg, "a")
    with reg.transaction():
        reg.ensure_identity("a", os.urandom(32))
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"not a fernet key\n")
    with open_reg(loc, key_file=str(garbage)) as bad:
        with pytest.raises(RegistryError) as err:
            bad.get_seed("a")
        assert err.value.field == "key_file" and "not a valid key" in str(err.value)
    missing = tmp_path / "missing.key"
    with open_reg(loc, key_file=str(missing)) as bad:
        with pytest.raises(RegistryError) as err:
            alloc(bad, "b")                     # a write: never a silent new key for this registry
        assert err.value.field == "key_file" and str(missing) in str(err.value)
        assert "restore it from a backup" in str(err.value)
    assert not missing.exists()


def test_key_from_the_environment(loc, monkeypatch, tmp_path):
    key = Fernet.generate_key()
    monkeypatch.delenv("FENRIR_REGISTRY_KEY_FILE", raising=False)
    monkeypatch.setenv("FENRIR_REGISTRY_KEY", key.decode())
    with open_reg(loc) as reg:
        alloc(reg, "a")
        with reg.transaction():
            reg.ensure_identity("a", b"k" * 32)
    assert not (tmp_path / "fleet.key").exists()     # nothing written beside: the key came from the environment
    monkeypatch.delenv("FENRIR_REGISTRY_KEY")
    keyfile = tmp_path / "injected.key"
    keyfile.write_bytes(key)
    monkeypatch.setenv("FENRIR_REGISTRY_KEY_FILE", str(keyfile))
    with open_reg(loc) as reg:
        assert reg.get_seed("a") == b"k" * 32 and reg.verify()["ok"]


def test_postgresql_registry_without_a_key_says_where_to_give_it(pg_loc, monkeypatch):
    monkeypatch.delenv("FENRIR_REGISTRY_KEY_FILE")
    with open_reg(pg_loc) as reg:
        with pytest.raises(RegistryError) as err:
            alloc(reg, "a")
    assert err.value.field == "key_file"
    assert "FENRIR_REGISTRY_KEY" in str(err.value) and "key_file" in str(err.value)


def test_swapped_secrets_are_caught(reg, loc):
    alloc(reg, "a")
    alloc(reg, "b")
    with reg.transaction():
        reg.ensure_identity("a", b"a" * 32)
        reg.ensure_identity("b", b"b" * 32)
    blobs = {r["label"]: r["secrets"] for r in sql(loc, "SELECT label, secrets FROM nodes")}
    edit(loc, "UPDATE nodes SET secrets = ? WHERE label = 'a'", blobs["b"])
    with pytest.raises(RegistryError) as err:
        reg.get_seed("a")
    assert err.value.label == "a" and err.value.field == "secrets" and "swapped" in str(err.value)
    assert reg.verify()["ok"] is False


def test_key_rotation_reencrypts_every_secret_in_one_audited_transaction(reg, loc, tmp_path):
    alloc(reg, "a")
    with reg.transaction():
        reg.ensure_identity("a", b"a" * 32)
    reg.put_tenant("t1", spec=dict(env=dict(TOKEN="x")))
    seed = reg.provisioner_seed()
    old_fp = reg.key_fingerprint()
    new = Fernet.generate_key()
    assert reg.rotate_key(new) == 3
    assert reg.key_fingerprint() != old_fp
    entries = reg.audit_entries()
    assert [e["action"] for e in entries[-4:]] == ["rekey", "rekey", "rekey", "rotate_key"]
    assert {e["kind"] for e in entries[-4:-1]} == {"node", "tenant", "secret"}
    assert reg.verify()["ok"] is True
    keyfile = tmp_path / "new.key"
    keyfile.write_bytes(new)
    with open_reg(loc, key_file=str(keyfile)) as again:
        assert again.get_seed("a") == b"a" * 32 and again.provisioner_seed(create=False) == seed
        assert again.get_tenant_spec("t1") == dict(env=dict(TOKEN="x"))
        assert again.verify()["ok"] is True


# --------------------------------------------------------------------------- status and reasons

def test_status_validation(reg, loc):
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
    for statement in ("UPDATE nodes SET status = 'bogus' WHERE label = 'a'",
                      "UPDATE nodes SET status = 'destroyed' WHERE label = 'a'"):    # still holds an address
        with pytest.raises(Exception) as err:
            sql(loc, statement)
        assert "constraint" in str(err.value).lower()


def test_reasons_keep_no_log_lines_and_no_secrets(reg):
    alloc(reg, "a")
    reason = ("container fenrir-a exited with code 1 (starting | token=abc123 | Traceback: boom) "
              "password: hunter2 Authorization: Bearer s3cr3tT0kenValue")
    with reg.transaction():
        reg.fail("a", reason)
    kept = reg.get("a")["reason"]
    assert kept.startswith("container fenrir-a exited with code 1") and "docker logs" in kept
    for secret in ("abc123", "Traceback", "hunter2", "s3cr3tT0kenValue"):
        assert secret not in kept and secret not in json.dumps(reg.audit_entries())
    with reg.transaction():
        reg.set_fields("a", reason="x" * 5000)
    assert len(reg.get("a")["reason"]) <= 500


# --------------------------------------------------------------------------- audit chain

def test_audit_entry_for_every_change_and_chain_links(reg, loc):
    lifecycle(reg)
    entries = reg.audit_entries()
    assert [(e["action"], e["label"]) for e in entries] == [
        ("allocate", "a"), ("allocate", "b"), ("update", "a"), ("identity", "b"),
        ("destroy", "b"), ("allocate", "b"), ("update", "a")]
    assert [e["height"] for e in entries] == list(range(1, 8))
    assert {e["kind"] for e in entries} == {"node"}
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
    assert reg.audit_head() == dict(height=7, hash=entries[-1]["hash"])
    with open_reg(loc) as again:
        assert again.verify()["ok"] is True


def test_failed_transaction_leaves_no_audit_entry(reg):
    alloc(reg, "a")
    with pytest.raises(RegistryError):
        with reg.transaction():
            reg.ensure(dict(label="b"), POOL)          # written ...
            reg.ensure(dict(label="c", ip="10.1.1.1"), POOL)   # ... then refused: all rolled back
    assert reg.get("b") is None
    assert len(reg.audit_entries()) == 1
    assert reg.verify()["ok"]


@pytest.fixture
def trail(loc):
    """A registry with the seven-entry lifecycle, closed."""
    with open_reg(loc) as reg:
        lifecycle(reg)
    return loc


def verdict(loc):
    with open_reg(loc) as reg:
        return reg.verify()


@pytest.mark.parametrize("statement, label, words", [
    ("UPDATE nodes SET ip = '172.21.0.99' WHERE label = 'a'", "a", "ip"),
    ("INSERT INTO nodes (label, server_id, ip, ip_int, created_at, updated_at)"
     " VALUES ('sneaky', 'fenrir-sneaky', '172.21.0.200', 2886008264, 0, 0)", "sneaky", "not in the audit trail"),
    ("DELETE FROM nodes WHERE label = 'b'", "b", "missing"),
])
def test_verify_reports_rows_changed_behind_the_registrys_back(trail, statement, label, words):
    edit(trail, statement)
    result = verdict(trail)
    assert result["ok"] is False and result["label"] == label and words in result["problem"]


@pytest.mark.parametrize("height, statement", [
    (3, "UPDATE audit SET actor = 'mallory' WHERE height = 3"),
    (2, "UPDATE audit SET after = replace(after, '172.21.0.11', '172.21.0.66') WHERE height = 2"),
    (5, "UPDATE audit SET ts = ts + 1 WHERE height = 5"),
    (4, "UPDATE audit SET action = 'update' WHERE height = 4"),
    (6, "UPDATE audit SET kind = 'host' WHERE height = 6"),
])
def test_verify_reports_first_bad_height_of_edited_audit_row(trail, height, statement):
    edit(trail, statement)
    result = verdict(trail)
    assert result["ok"] is False and result["height"] == height
    assert "audit entry %d" % height in result["problem"]


def test_a_writer_without_the_key_cannot_forge_an_entry(trail):
    """Recomputing the public hash (what schema 4 allowed) is caught at the forged entry itself."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import entry_hash
    e = sql(trail, "SELECT * FROM audit WHERE height = 3")[0]
    forged = entry_hash(3, e["ts"], "mallory", e["action"], e["label"], json.loads(e["before"]),
                        json.loads(e["after"]), e["prev_hash"])
    edit(trail, "UPDATE audit SET actor = 'mallory', hash = ? WHERE height = 3", forged)
    result = verdict(trail)
    assert result["ok"] is False and result["height"] == 3 and "keyed MAC" in result["problem"]


@pytest.mark.parametrize("height, reported", [(1, 2), (4, 5)])
def test_verify_reports_deleted_audit_row(trail, height, reported):
    edit(trail, "DELETE FROM audit WHERE height = ?", height)
    result = verdict(trail)
    assert result["ok"] is False and result["height"] == reported and "missing" in result["problem"]


def test_verify_reports_a_truncated_tail(trail):
    edit(trail, "DELETE FROM audit WHERE height >= 6")
    result = verdict(trail)
    assert result["ok"] is False and result["height"] == 7
    assert "truncated" in result["problem"] and "ends at entry 5" in result["problem"]
    edit(trail, "DELETE FROM registry_meta WHERE key = 'audit_head'")
    assert "anchor" in verdict(trail)["problem"]


# --------------------------------------------------------------------------- the file (SQLite only)

def test_schema_version_and_file_settings(db):
    with open_reg(db) as reg:
        assert reg.schema_version == SCHEMA_VERSION == 5
        assert reg.conn.execute("PRAGMA synchronous").fetchone()["synchronous"] == 2   # FULL
    assert sql(db, "PRAGMA journal_mode") == [{"journal_mode": "wal"}]


def test_not_a_database_is_refused(tmp_path):
    path = tmp_path / "fleet.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(RegistryError) as err:
        open_reg(str(path))
    assert err.value.field == "registry" and str(path) in str(err.value)


def test_missing_directory_is_created_private(tmp_path):
    with open_reg(str(tmp_path / "state" / "fleet.db")) as reg:
        alloc(reg, "a")
    assert oct(os.stat(str(tmp_path / "state")).st_mode & 0o777) == "0o700"


def test_directory_that_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RegistryError) as err:
        open_reg(str(tmp_path / "afile" / "sub" / "fleet.db"))
    assert err.value.field == "registry"


def test_allocation_keeps_lowest_free_exact(loc):
    """The allocator never hands out an address above a free one of the pool."""
    pool = Pool("10.9.0.0/24", "10.9.0.1", "10.9.0.10", "10.9.0.20")
    with open_reg(loc) as reg:
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
        assert reg.runs.runs() == [(int(ipaddress.IPv4Address("10.9.0.10")), int(ipaddress.IPv4Address("10.9.0.18")))]
        assert reg.verify()["ok"] is True


def test_a_registry_that_is_read_only_is_a_clear_error(db, tmp_path):
    with open_reg(db) as reg:
        alloc(reg, "a")
    os.chmod(str(tmp_path), 0o500)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.chmod(db + suffix, 0o400)
    try:
        with pytest.raises(RegistryError) as err:
            with open_reg(db) as reg:
                if os.geteuid() == 0:   # root writes read-only files: the error SQLite gives anyone else
                    reg.store.fail(sqlite3.OperationalError("attempt to write a readonly database"), "write")
                alloc(reg, "b")
        assert "read-only" in str(err.value) and db in str(err.value) and "permissions" in str(err.value)
    finally:
        os.chmod(str(tmp_path), 0o700)


def test_locked_registry_is_a_clear_error(loc):
    with open_reg(loc) as reg:
        alloc(reg, "a")
    holder = open_reg(loc, actor="long run")
    holder._begin()                                   # another run holds the write lock
    try:
        with open_reg(loc, busy_timeout=0.3) as reg:
            with pytest.raises(RegistryError) as err:
                alloc(reg, "b")
        assert "locked" in str(err.value) and reg.path in str(err.value) and "run again" in str(err.value)
    finally:
        holder._end(False)
        holder.close()


def test_postgresql_errors_name_the_registry_without_its_password(pg_loc):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import redact_dsn
    base, query = pg_loc.split("?", 1)
    wrong = base.replace("postgres@", "postgres:not-the-password@", 1)
    with pytest.raises(RegistryError) as err:
        Registry(wrong + "?" + query)
    assert "password authentication failed" in str(err.value) and "not-the-password" not in str(err.value)
    assert redact_dsn(wrong) in str(err.value) and "PGPASSWORD" in str(err.value)
    with pytest.raises(RegistryError) as err:
        Registry("postgresql://nobody:pw@127.0.0.1:1/none")
    assert "cannot reach" in str(err.value) and ":pw@" not in str(err.value)


def test_without_psycopg_a_dsn_is_a_clear_error_and_sqlite_still_works(monkeypatch, db):
    import sys
    monkeypatch.setitem(sys.modules, "psycopg", None)          # as on a controller without the package
    with pytest.raises(RegistryError) as err:
        Registry("postgresql://fleet@db.example/fleet")
    assert err.value.field == "registry" and "psycopg" in str(err.value) and "pip install" in str(err.value)
    with open_reg(db) as reg:
        assert alloc(reg, "a")["ip"] == "172.21.0.10"
