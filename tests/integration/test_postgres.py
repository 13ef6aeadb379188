"""The fleet on PostgreSQL, end to end: ansible-playbook against the real engine and the private cluster of
scripts/ensure-postgres (a database per test run, dropped afterwards; a schema per test).

The DSN carries no password: it comes from the passfile in the test's environment (PGPASSFILE, exported by
ensure-postgres), never from a command line -- and it is in no output. (A killed run against PostgreSQL is in
test_crash_safety.py; what an unusable registry looks like, in tests/unit/plugins/modules/test_registry_failures.py.)
"""
import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from conftest import CLIENT, ROOT, VENV_BIN, apart_fleet, original_node, original_registry
from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident

LOCK_CLASS = 0x46464C54  # the registry's advisory lock space (store_postgres.LOCK_CLASS)


def server_password():
    with open(os.environ["PGPASSFILE"]) as fh:
        return fh.readline().strip().rsplit(":", 1)[1]


def assert_no_password(*outputs):
    password = server_password()
    for out in outputs:
        text = out if isinstance(out, str) else out.stdout + out.stderr
        assert password not in text


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


class WriteLock:
    """The registry's write lock, held from outside as a long run would hold it."""

    def __init__(self, dsn):
        self.conn = psycopg.connect(dsn, autocommit=True)

    def __enter__(self):
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT pg_advisory_xact_lock(%d, hashtext(current_schema()))" % LOCK_CLASS)
        return self

    def __exit__(self, *exc):
        self.conn.execute("ROLLBACK")
        self.conn.close()


def inventory_graph(registry, directory):
    path = os.path.join(directory, "registry.fleet.yml")
    with open(path, "w") as fh:
        fh.write("plugin: fenrir.fleet.fleet\nregistry: %s\n" % json.dumps(registry))
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-inventory"), "-i", path, "--graph"], cwd=ROOT,
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def status_report(fleet, directory):
    out = os.path.join(directory, "status-%s.json" % os.urandom(3).hex())
    fleet.play("status.yml", "-e", "fenrir_status_json=%s" % out)
    with open(out) as fh:
        return json.load(fh)


def test_provision_grow_inspect_rekey_decommission_on_postgresql(pg_fleet, tmp_path):
    fleet = pg_fleet
    a, b, c = fleet.label("a"), fleet.label("b"), fleet.label("c")
    fleet.set_hosts({a: {"knarr_node_location": "lab"}, b: {}})
    first = fleet.play("provision.yml")
    assert {label: r["status"] for label, r in fleet.rows().items()} == {a: "online", b: "online"}
    containers = fleet.containers()
    assert set(containers) == {a, b} and {x["registry"] for x in containers.values()} == {fleet.shown}
    assert "@" in fleet.shown and ":" not in fleet.shown.split("@")[0][len("postgresql://"):]  # no password part

    # Grow. A dry run while another run holds the registry's write lock: it neither waits for the lock nor
    # writes anything (not the registry, not a key, not Docker).
    fleet.set_hosts(dict(fleet.hosts, **{c: {}}))
    before = fleet.snapshot()
    with WriteLock(fleet.registry):
        dry = fleet.play("provision.yml", "--check", "--diff")
    assert fleet.snapshot() == before
    planned = {n["label"]: n["ip"] for n in dry.task_result("made and started")["nodes"]}
    assert planned == {a: fleet.ip(0), b: fleet.ip(1), c: fleet.ip(2)}
    # A dry run and a real run at once: both finish, the real one grows the fleet.
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(fleet.play, "provision.yml"), pool.submit(fleet.play, "provision.yml", "--check")]
        real, check = [r.result() for r in runs]
    rows = fleet.rows()
    assert rows[c]["status"] == "online" and rows[c]["ip"] == fleet.ip(2)
    assert set(fleet.containers()) == {a, b, c}

    # The registry as an inventory, read without its key.
    graph = inventory_graph(fleet.registry, str(tmp_path)).stdout
    assert "@knarr_nodes:" in graph and "@fleet_status_online:" in graph and "@fleet_location_lab:" in graph
    assert all("|--%s" % x in graph for x in (a, b, c))

    # Status (drift) and the audit chain.
    report = status_report(fleet, str(tmp_path))
    assert report["in_sync"] is True and report["registry"] == fleet.shown and len(report["nodes"]) == 3
    assert report["audit"]["ok"] is True
    audit = fleet.play("audit.yml")
    head = audit.task_result("Verify the audit chain")["audit_head"]
    assert head["height"] == report["audit"]["entries"]

    # Rotate the key: the fleet's key file is replaced; the chain still holds the head seen before.
    old_key = read(fleet.key_file)
    rekey = fleet.play("registry_rekey.yml")
    rotated = rekey.task_result("Rotate the key")
    # Three nodes' secrets and the provisioner's identity (a registry secret record).
    assert rotated["records"] == 4 and rotated["key_file"] == fleet.key_file and read(fleet.key_file) != old_key
    assert rotated["audit_head"]["height"] == head["height"] + 5  # a rekey entry per record, then rotate_key
    fleet.play("audit.yml", "-e", json.dumps({"fenrir_audit_expect_head": head}))

    # Decommission, with the new key.
    gone = fleet.play("decommission.yml")
    assert fleet.containers() == {}
    assert all(r["status"] == "destroyed" and r["ip_int"] is None for r in fleet.rows().values())
    assert_no_password(first, dry, real, check, audit, rekey, gone, graph)
    for out in (first, rekey, gone):
        assert old_key.decode().strip() not in out.stdout and read(fleet.key_file).decode().strip() not in out.stdout


def test_original_fleet_db_adopted_straight_into_postgresql(pg_fleet, tmp_path):
    """The original skill's fleet.db goes into PostgreSQL (adopted on the way, the file left as it was); the next
    provisioning run against PostgreSQL takes its node over with its identity."""
    fleet = pg_fleet
    seed = ident.new_seed()
    node_id = ident.node_id_from_seed(seed)
    label, ip = fleet.label("o"), fleet.ip(40)
    original = str(tmp_path / "old-skill" / "fleet.db")
    original_registry(original, "INSERT INTO fleet_nodes VALUES (?, ?, 'docker', 'lab', ?, ?, 'PLAINKEY-pg1', "
                      "'PLAINSEED-pg1', 'n1', 'online', ?, ?, ?)",
                      (label, "fenrir-" + label, ip, node_id, time.time(), time.time(), time.time()))
    old_id = original_node(seed, label=label, ip=ip, network=fleet.network, subnet=fleet.subnet)
    untouched = read(original)
    copy = fleet.play("registry_copy.yml", "-e", "fenrir_registry_source=%s" % original,
                      "-e", "fenrir_registry_target=%s" % fleet.registry, "-e", "fenrir_registry_create_key=true")
    copied = copy.task_result("Copy the registry")
    assert copied["changed"] and copied["copied"]["nodes"] == 1 and copied["former_locations"] == [original]
    assert read(original) == untouched and os.path.exists(fleet.key_file)
    row = fleet.rows()[label]
    assert row["ip"] == ip and row["node_id"] == node_id and b"PLAINSEED" not in bytes(row["secrets"])

    fleet.set_hosts({label: {"knarr_node_location": "lab"}})
    fleet.play("provision.yml")
    row = fleet.rows()[label]
    assert row["status"] == "online" and row["ip"] == ip and row["node_id"] == node_id
    new = CLIENT.containers.get("fenrir-" + label)
    assert new.id != old_id and new.labels["fenrir.fleet.registry"] == fleet.shown   # taken over, labelled
    assert_no_password(copy)


def test_a_sqlite_fleet_moved_to_postgresql_keeps_its_containers(sqlite_fleet_apart, pg_location, tmp_path):
    fleet = sqlite_fleet_apart
    fleet.set_hosts({fleet.label("a"): {}, fleet.label("b"): {}})
    fleet.play("provision.yml")
    ids = {label: c["id"] for label, c in fleet.containers().items()}
    before = fleet.snapshot()
    target = ["-e", "fenrir_registry_target=%s" % pg_location]
    dry = fleet.play("registry_copy.yml", "--check", "--diff", *target)
    assert dry.task_result("Copy the registry")["changed"] is True
    with psycopg.connect(pg_location) as conn:   # the dry run wrote nothing there either
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = "
                            "current_schema()").fetchone()[0] == 0
    copy = fleet.play("registry_copy.yml", *target)
    copied = copy.task_result("Copy the registry")
    assert copied["changed"] and copied["ok"] and copied["copied"]["nodes"] == 2
    assert copied["former_locations"] == [fleet.registry] and copied["entries"] == copied["copied"]["audit"] + 1
    assert fleet.snapshot() == before                             # the source was only read
    assert fleet.play("registry_copy.yml", *target).task_result("Copy the registry")["changed"] is False

    # The fleet now runs on PostgreSQL, with the same key.
    moved = apart_fleet(str(tmp_path / "moved"), registry=pg_location)
    shutil.copy(os.path.join(os.path.dirname(fleet.registry), "fleet.key"), moved.key_file)
    moved.set_hosts(fleet.hosts)
    report = status_report(moved, str(tmp_path))
    assert report["in_sync"] is True and report["audit"]["ok"] is True   # containers labelled for the file are its
    assert moved.play("provision.yml").changed() == 0                    # kept as they are, not recreated
    assert {label: c["id"] for label, c in fleet.containers().items()} == ids
    assert_no_password(dry, copy)
