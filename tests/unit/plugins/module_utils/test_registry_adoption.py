"""Taking over a fleet.db written by the original fleet-provision-docker-lite skill (schema 1).

The original layout (from the skill's source):
  fleet_nodes(label TEXT PRIMARY KEY, server_id, provider, location, ip, node_id, encryption_key,
              seed_encrypted, nonce, status TEXT DEFAULT 'provisioning', created_at REAL, last_seen REAL,
              report_received_at REAL)
with plain-text secrets and no reservation (two rows may hold one address: the original race).
"""

import glob
import os
import sqlite3

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    SCHEMA_VERSION, Pool, Registry, RegistryError,
)

POOL = Pool()

ORIGINAL_DDL = (
    "CREATE TABLE fleet_nodes (label TEXT PRIMARY KEY, server_id, provider, location, ip, node_id, "
    "encryption_key, seed_encrypted, nonce, status TEXT DEFAULT 'provisioning', created_at REAL, "
    "last_seen REAL, report_received_at REAL)"
)

# Distinctive plain-text secrets: after adoption none may be left anywhere in the file.
MARKERS = {
    "online": ("MARKERKEY-online-5b1e0c7d9a", "MARKERSEED-online-c0ffee42aa"),
    "prov": ("MARKERKEY-prov-71d2aa8e3f", "MARKERSEED-prov-deadbeef17"),
    "dead": ("MARKERKEY-dead-0a9c44e1b2", "MARKERSEED-dead-feedface99"),
    "dup-a": ("MARKERKEY-dupa-3e3e3e3e3e", "MARKERSEED-dupa-abcdef0123"),
    "dup-b": ("MARKERKEY-dupb-4f4f4f4f4f", "MARKERSEED-dupb-9876543210"),
}
# label, ip, status, created_at (dup-a is older than dup-b: it keeps the address)
ROWS = [
    ("online", "172.21.0.10", "online", 1000.0),
    ("prov", "172.21.0.11", "provisioning", 1001.0),
    ("dead", "172.21.0.12", "destroyed", 1002.0),
    ("dup-a", "172.21.0.13", "provisioning", 1003.0),
    ("dup-b", "172.21.0.13", "provisioning", 1004.0),
]


def build_original(path, journal_mode="delete"):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = %s" % journal_mode)
    conn.execute(ORIGINAL_DDL)
    for label, ip, status, created in ROWS:
        key, seed = MARKERS[label]
        conn.execute(
            "INSERT INTO fleet_nodes (label, server_id, provider, location, ip, node_id, encryption_key,"
            " seed_encrypted, nonce, status, created_at, last_seen, report_received_at)"
            " VALUES (?, ?, 'docker', 'eu-north', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (label, "fenrir-" + label, ip, "ab" * 32, key, seed, "nonce-" + label, status, created,
             created + 5 if status == "online" else None, created + 6 if status == "online" else None))
    # a row relying on the column default
    conn.execute("INSERT INTO fleet_nodes (label, server_id, provider, ip, created_at)"
                 " VALUES ('defaulted', 'fenrir-defaulted', 'docker', '172.21.0.20', 1005.0)")
    conn.commit()
    conn.close()


def all_file_bytes(path):
    out = {}
    for name in glob.glob(path + "*"):
        with open(name, "rb") as fh:
            out[name] = fh.read()
    return out


@pytest.fixture(params=["delete", "wal"], ids=["rollback-journal", "wal"])
def original(request, tmp_path):
    path = str(tmp_path / "fleet.db")
    build_original(path, request.param)
    raw = all_file_bytes(path)
    assert any(MARKERS["online"][0].encode() in data for data in raw.values())  # the markers really are there
    return path


def test_adoption_keeps_every_row_and_reserves_addresses(original):
    with Registry(original, actor="adopt") as reg:
        assert reg.schema_version == SCHEMA_VERSION == 5
        nodes = {n["label"]: n for n in reg.all()}
        assert sorted(nodes) == sorted([r[0] for r in ROWS] + ["defaulted"])
        assert nodes["online"]["status"] == "online" and nodes["online"]["ip"] == "172.21.0.10"
        assert nodes["online"]["last_seen"] == 1005.0 and nodes["online"]["report_received_at"] == 1006.0
        assert nodes["online"]["nonce"] == "nonce-online" and nodes["online"]["location"] == "eu-north"
        assert nodes["online"]["node_id"] == "ab" * 32 and nodes["online"]["created_at"] == 1000.0
        assert nodes["prov"]["status"] == "provisioning"
        assert nodes["defaulted"]["status"] == "provisioning"
        assert nodes["dead"]["status"] == "destroyed"
        # the race: the older row keeps the address, the younger one is failed with a reason
        assert nodes["dup-a"]["status"] == "provisioning" and nodes["dup-a"]["reason"] is None
        assert nodes["dup-b"]["status"] == "failed"
        assert "172.21.0.13" in nodes["dup-b"]["reason"] and "dup-a" in nodes["dup-b"]["reason"]
        assert all(n["has_identity"] for label, n in nodes.items() if label != "defaulted")
        held = {r["label"]: r["ip_int"] for r in reg.store.all("SELECT label, ip_int FROM nodes")}
        assert held["dead"] is None and held["dup-b"] is None
        assert held["online"] is not None and held["dup-a"] is not None
        # the legacy secrets were kept, encrypted
        legacy = reg._decrypt(reg.get_row("online")["secrets"], "online")["legacy"]
        assert legacy == {"encryption_key": MARKERS["online"][0], "seed_encrypted": MARKERS["online"][1]}
        # the old table is gone, every adopted row is in the audit trail
        assert "fleet_nodes" not in reg._tables()
        assert sorted(e["label"] for e in reg.audit_entries() if e["action"] == "adopt") == sorted(nodes)
        assert reg.verify()["ok"] is True


def test_next_allocation_skips_adopted_addresses_and_reuses_destroyed_one(original):
    with Registry(original, actor="adopt") as reg:
        got = []
        for label in ("new-1", "new-2", "new-3"):
            with reg.transaction():
                got.append(reg.ensure(dict(label=label), POOL)[1]["ip"])
    # .10 .11 .13 are held, .12 was destroyed, .20 held by 'defaulted'
    assert got == ["172.21.0.12", "172.21.0.14", "172.21.0.15"]


def test_no_plain_text_secret_left_in_the_files(original):
    with Registry(original, actor="adopt") as reg:
        with reg.transaction():
            reg.ensure(dict(label="after-adoption"), POOL)
    files = all_file_bytes(original)
    assert original in files
    for name, data in files.items():
        for key, seed in MARKERS.values():
            for marker in (key, seed):
                assert marker.encode() not in data, "%s found in %s" % (marker, name)
                assert marker.encode("utf-16-le") not in data
    # and the plain-text column names survive only as JSON keys inside encrypted blobs, not as a table
    conn = sqlite3.connect(original)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'fleet_nodes'").fetchone() == (0,)
    conn.close()


def test_no_plain_text_secret_left_on_sqlite_builds_without_secure_delete(original, monkeypatch):
    """Debian's SQLite turns secure_delete on by default; stock builds do not.  Simulate the latter:
    every new connection starts with secure_delete off, so only the registry's own pragma can help."""
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.execute("PRAGMA secure_delete = OFF")
        return conn
    monkeypatch.setattr(sqlite3, "connect", connect)
    probe = sqlite3.connect(":memory:")
    assert probe.execute("PRAGMA secure_delete").fetchone() == (0,)
    probe.close()
    Registry(original, actor="adopt").close()
    for name, data in all_file_bytes(original).items():
        for key, seed in MARKERS.values():
            assert key.encode() not in data and seed.encode() not in data, "%s in %s" % (key, name)


def test_no_plain_text_secret_left_while_the_adopting_registry_is_still_open(original):
    # fleet.db may be copied (backup, rsync) while a long run still holds the registry open
    with Registry(original, actor="adopt") as reg:
        for name, data in all_file_bytes(original).items():
            for key, seed in MARKERS.values():
                assert key.encode() not in data and seed.encode() not in data, "%s in %s" % (key, name)
        assert reg.verify()["ok"]


def test_adopted_nodes_are_manageable(original):
    with Registry(original, actor="adopt") as reg:
        with reg.transaction():
            assert reg.ensure(dict(label="prov"), POOL)[1]["ip"] == "172.21.0.11"   # keeps its address
            before, after, changed = reg.destroy("online")
            assert changed and after["status"] == "destroyed"
        # the failed duplicate gets a fresh address (its old one belongs to dup-a): the lowest free
        with reg.transaction():
            assert reg.ensure(dict(label="dup-b"), POOL)[1]["ip"] == "172.21.0.10"
        with reg.transaction():
            seed, changed = reg.ensure_identity("prov", None, lambda: os.urandom(32))
        # the legacy columns hold no knarr seed: a fresh identity is made, the legacy values are kept
        assert changed is True and len(seed) == 32 and reg.get_seed("prov") == seed
        secrets = reg._decrypt(reg.get_row("prov")["secrets"], "prov")
        assert secrets["legacy"]["encryption_key"] == MARKERS["prov"][0]
        with reg.transaction():
            reg.set_fields("prov", status="online")
        assert reg.verify()["ok"] is True
        # the destroyed one can be brought back, to its old address when free
        with reg.transaction():
            assert reg.ensure(dict(label="dead"), POOL)[1]["ip"] == "172.21.0.12"


def test_adopted_file_and_its_wal_end_up_private(original):
    os.chmod(original, 0o644)
    with Registry(original, actor="adopt") as reg:
        with reg.transaction():
            reg.ensure(dict(label="after-adoption"), POOL)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(original + suffix):
                assert oct(os.stat(original + suffix).st_mode & 0o777) == "0o600", suffix


def test_original_fleet_db_adopted_straight_into_postgresql(original, pg_loc, tmp_path):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import copy_registry
    before = all_file_bytes(original)
    key = str(tmp_path / "fleet.key")
    result = copy_registry(original, pg_loc, key_file=key, create_key=True)
    assert result["ok"] and result["copied"]["nodes"] == 6 and result["copied"]["audit"] == 6
    assert all_file_bytes(original) == before                  # the file is left as it was
    with Registry(pg_loc, key_file=key, actor="pg") as reg:
        nodes = {n["label"]: n for n in reg.all()}
        assert nodes["dup-b"]["status"] == "failed" and nodes["online"]["ip"] == "172.21.0.10"
        legacy = reg._decrypt(reg.get_row("online")["secrets"], "online")["legacy"]
        assert legacy["encryption_key"] == MARKERS["online"][0]
        with reg.transaction():
            assert reg.ensure(dict(label="new"), POOL)[1]["ip"] == "172.21.0.12"
        assert reg.verify()["ok"] is True


def test_reopening_an_adopted_db_is_a_no_op(original):
    Registry(original, actor="adopt").close()
    conn = sqlite3.connect(original)
    nodes = conn.execute("SELECT * FROM nodes ORDER BY label").fetchall()
    audit = conn.execute("SELECT * FROM audit ORDER BY height").fetchall()
    conn.close()
    with Registry(original, actor="again") as reg:
        assert reg.schema_version == SCHEMA_VERSION
        assert reg.verify()["ok"]
    conn = sqlite3.connect(original)
    assert conn.execute("SELECT * FROM nodes ORDER BY label").fetchall() == nodes
    assert conn.execute("SELECT * FROM audit ORDER BY height").fetchall() == audit
    conn.close()


def test_unknown_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "fleet.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE nodes (label TEXT PRIMARY KEY)")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(RegistryError) as err:
        Registry(path, actor="x")
    assert err.value.field == "registry"
    assert "99" in str(err.value) and "schema version" in str(err.value)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (99,)
    conn.close()


def test_check_mode_does_not_adopt(original):
    before = all_file_bytes(original)[original]
    with Registry(original, actor="plan", check_mode=True) as reg:
        assert reg.schema_version == SCHEMA_VERSION          # planned on a scratch copy
        with reg.transaction():
            assert reg.ensure(dict(label="new"), POOL)[1]["ip"] == "172.21.0.12"
    assert all_file_bytes(original)[original] == before
    conn = sqlite3.connect(original)
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM fleet_nodes").fetchone() == (6,)
    conn.close()


# --------------------------------------------------------------------------- secrets in freed pages, busy WAL

def build_original_with_deleted_rows(path, journal_mode):
    """An original fleet.db on a SQLite without secure_delete: most rows (with their secrets) were deleted
    by the old skill, so their plain text sits in free pages and free blocks."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA secure_delete = OFF")
    conn.execute("PRAGMA journal_mode = %s" % journal_mode)
    conn.execute(ORIGINAL_DDL)
    secrets = []
    for i in range(300):
        key, seed = "GONEKEY-%04d-%s" % (i, "k" * 60), "GONESEED-%04d-%s" % (i, "s" * 60)
        secrets += [key, seed]
        conn.execute("INSERT INTO fleet_nodes (label, server_id, provider, ip, encryption_key, seed_encrypted,"
                     " status, created_at) VALUES (?, ?, 'docker', ?, ?, ?, 'online', ?)",
                     ("n%03d" % i, "fenrir-n%03d" % i, "172.21.%d.%d" % (i // 200, 10 + i % 200), key, seed, 1000.0 + i))
    conn.commit()
    conn.execute("DELETE FROM fleet_nodes WHERE label NOT IN ('n007', 'n123', 'n250')")
    conn.commit()
    conn.close()
    raw = all_file_bytes(path)
    assert any(b"GONEKEY-0100" in data for data in raw.values())   # the deleted secrets really linger
    return secrets


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_secrets_of_rows_deleted_before_adoption_do_not_survive_it(tmp_path, journal_mode):
    path = str(tmp_path / "fleet.db")
    secrets = build_original_with_deleted_rows(path, journal_mode)
    with Registry(path, actor="adopt") as reg:
        assert sorted(n["label"] for n in reg.all()) == ["n007", "n123", "n250"]
        open_files = all_file_bytes(path)
        assert reg.verify()["ok"] is True
    for files in (open_files, all_file_bytes(path)):
        for name, data in files.items():
            assert b"GONEKEY" not in data and b"GONESEED" not in data, name
    assert len(secrets) == 600


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_reader_during_adoption_gives_a_clean_file_or_a_clear_error(tmp_path, journal_mode):
    path = str(tmp_path / "fleet.db")
    build_original_with_deleted_rows(path, journal_mode)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM fleet_nodes").fetchone() == (3,)   # holds a snapshot open
    try:
        try:
            Registry(path, actor="adopt", busy_timeout=1.0).close()
        except RegistryError as exc:
            assert exc.field == "registry"
            message = str(exc)
            assert "another" in message and ("plain-text" in message or "WAL" in message), message
        else:
            for name, data in all_file_bytes(path).items():
                assert b"GONEKEY" not in data and b"GONESEED" not in data, name
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    # once the reader is gone the next run finishes the job
    with Registry(path, actor="again") as reg:
        assert reg.schema_version == SCHEMA_VERSION
        assert sorted(n["label"] for n in reg.all()) == ["n007", "n123", "n250"]
    for name, data in all_file_bytes(path).items():
        assert b"GONEKEY" not in data and b"GONESEED" not in data, name


# --------------------------------------------------------------------------- labels, statuses, created_at

def build_rows(path, rows):
    conn = sqlite3.connect(path)
    conn.execute(ORIGINAL_DDL)
    conn.executemany("INSERT INTO fleet_nodes (label, server_id, provider, ip, status, created_at)"
                     " VALUES (?, ?, 'docker', ?, ?, ?)", [(l, "fenrir-%s" % l, ip, s, c) for l, ip, s, c in rows])
    conn.commit()
    conn.close()


def test_rows_with_labels_the_collection_cannot_use_are_kept_failed(tmp_path):
    path = str(tmp_path / "fleet.db")
    long_label = "x" * 57
    build_rows(path, [
        ("good-1", "172.21.0.10", "online", 1.0),
        ("Bad_Label", "172.21.0.11", "online", 2.0),
        (long_label, "172.21.0.12", "provisioning", 3.0),
        ("-dash", "172.21.0.13", "online", 4.0),
        ("Gone.Node", "172.21.0.14", "destroyed", 5.0),
    ])
    with Registry(path, actor="adopt") as reg:
        nodes = {n["label"]: n for n in reg.all()}
        assert sorted(nodes) == sorted(["good-1", "Bad_Label", long_label, "-dash", "Gone.Node"])
        assert nodes["good-1"]["status"] == "online" and nodes["good-1"]["reason"] is None
        for label in ("Bad_Label", long_label, "-dash"):
            assert nodes[label]["status"] == "failed", label
            assert "not a valid fenrir.fleet label" in nodes[label]["reason"]
            assert "decommission" in nodes[label]["reason"]
            assert nodes[label]["address_held"] is True          # its container may still use the address
        assert nodes["Gone.Node"]["status"] == "destroyed"
        with reg.transaction():
            assert reg.ensure(dict(label="new"), POOL)[1]["ip"] == "172.21.0.14"
            reg.destroy("Bad_Label")
        assert reg.verify()["ok"] is True


def test_unknown_status_is_kept_in_the_reason(tmp_path):
    path = str(tmp_path / "fleet.db")
    build_rows(path, [("booting", "172.21.0.10", "booting", 1.0), ("nostatus", "172.21.0.11", None, 2.0),
                      ("no-address", None, "online", 3.0)])
    with Registry(path, actor="adopt") as reg:
        booting, nostatus, no_address = reg.get("booting"), reg.get("nostatus"), reg.get("no-address")
    assert booting["status"] == "provisioning" and "'booting'" in booting["reason"]
    assert nostatus["status"] == "provisioning" and "no status" in nostatus["reason"]
    # a live record needs an address: one that had none is kept failed
    assert no_address["status"] == "failed" and "no address" in no_address["reason"]
    assert "'online'" in no_address["reason"]


def test_row_without_created_at_does_not_win_a_shared_address(tmp_path):
    path = str(tmp_path / "fleet.db")
    build_rows(path, [("undated", "172.21.0.10", "online", None), ("dated", "172.21.0.10", "online", 1000.0),
                      ("later", "172.21.0.10", "online", 2000.0)])
    with Registry(path, actor="adopt") as reg:
        assert reg.get("dated")["status"] == "online" and reg.get("dated")["address_held"]
        for label in ("undated", "later"):
            assert reg.get(label)["status"] == "failed" and "'dated'" in reg.get(label)["reason"]
        assert reg.get("undated")["created_at"] is not None
