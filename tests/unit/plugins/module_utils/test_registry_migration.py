"""Schema 4 -> 5: the unkeyed chain re-anchored by one keyed ``rekey`` entry, every node's secrets sealed to its
row and its new columns recorded (a ``migrate`` entry each); a missing key refuses the migration."""

import json
import os
import sqlite3

import pytest
from cryptography.fernet import Fernet

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    SCHEMA_VERSION, Pool, Registry, RegistryError, entry_hash)

from registry_testlib import edit, make_v4, sql

POOL = Pool()
SEEDS = {"a": b"a" * 32, "c": b"c" * 32}


@pytest.fixture
def v4(tmp_path):
    path = str(tmp_path / "fleet.db")
    key = Fernet.generate_key()
    (tmp_path / "fleet.key").write_bytes(key + b"\n")
    legacy = make_v4(path, POOL, ["a", "b", "c"], seeds=SEEDS, key=key, destroyed=["b"])
    return path, legacy


def test_a_schema_4_chain_is_re_anchored_and_its_secrets_sealed(v4):
    path, legacy = v4
    with Registry(path, actor="v5") as reg:
        assert reg.schema_version == SCHEMA_VERSION == 5
        entries = reg.audit_entries()
        rekey = entries[legacy]
        seen = (rekey["height"], rekey["action"], rekey["kind"], rekey["label"])
        assert seen == (legacy + 1, "rekey", "registry", None)
        after = json.loads(rekey["after"])
        assert after["legacy_entries"] == legacy and after["legacy_head"] == entries[legacy - 1]["hash"]
        assert after["from_schema"] == 4 and after["key_fingerprint"] == reg.key_fingerprint()
        assert [(e["action"], e["label"]) for e in entries[legacy + 1:]] == [("migrate", l) for l in "abc"]
        assert reg.verify()["ok"] is True
        assert reg.get_seed("a") == SEEDS["a"] and reg.get_seed("b") is None
        assert reg.get("a")["network_mode"] == "bridge"
        with reg.transaction():
            assert reg.ensure(dict(label="d"), POOL)[1]["ip"] == "172.21.0.11"   # b's address was freed
        assert reg.verify()["ok"] is True
    # the secrets are bound to their rows now
    blobs = {r["label"]: r["secrets"] for r in sql(path, "SELECT label, secrets FROM nodes")}
    edit(path, "UPDATE nodes SET secrets = ? WHERE label = 'c'", blobs["a"])
    with Registry(path, actor="v5") as reg:
        with pytest.raises(RegistryError, match="swapped"):
            reg.get_seed("c")


def test_an_edit_of_the_unkeyed_part_is_still_caught(v4):
    path, legacy = v4
    Registry(path, actor="v5").close()
    edit(path, "UPDATE audit SET actor = 'mallory' WHERE height = 2")
    with Registry(path) as reg:
        result = reg.verify()
    assert result["ok"] is False and result["height"] == 2 and "does not match its hash" in result["problem"]


def test_rewriting_the_unkeyed_part_with_public_hashes_is_caught_at_the_rekey_entry(v4):
    path, legacy = v4
    Registry(path, actor="v5").close()
    rows = sql(path, "SELECT * FROM audit WHERE height <= ? ORDER BY height", legacy)
    prev = "0" * 64
    for e in rows:                           # recompute the whole public chain with a forged actor
        actor = "mallory" if e["height"] == 2 else e["actor"]
        digest = entry_hash(e["height"], e["ts"], actor, e["action"], e["label"],
                            json.loads(e["before"]) if e["before"] else None,
                            json.loads(e["after"]) if e["after"] else None, prev)
        edit(path, "UPDATE audit SET actor = ?, prev_hash = ?, hash = ? WHERE height = ?", actor, prev, digest,
             e["height"])
        prev = digest
    with Registry(path) as reg:
        result = reg.verify()
    assert result["ok"] is False and result["height"] == legacy + 1 and "prev_hash" in result["problem"]


def test_a_schema_4_registry_with_secrets_and_no_key_is_not_migrated(v4, tmp_path):
    path, dummy = v4
    os.unlink(str(tmp_path / "fleet.key"))
    with pytest.raises(RegistryError) as err:
        Registry(path)
    assert err.value.field == "key_file" and str(tmp_path / "fleet.key") in str(err.value)
    assert "restore it from a backup" in str(err.value)
    assert not (tmp_path / "fleet.key").exists()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (4,)
    conn.close()


def test_a_record_edited_before_the_migration_stays_reported(v4):
    path, dummy = v4
    edit(path, "UPDATE nodes SET location = 'elsewhere' WHERE label = 'c'")
    with Registry(path) as reg:
        result = reg.verify()
    assert result["ok"] is False and result["label"] == "c" and "location" in result["problem"]
