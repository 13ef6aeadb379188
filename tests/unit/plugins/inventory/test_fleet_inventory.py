"""The fenrir.fleet.fleet inventory plugin, run through ansible-inventory as a subprocess.

A temporary registry is built with the Registry class; the plugin must list its nodes, group them,
apply the constructed options and never write the registry.
"""

import hashlib
import json
import os
import sqlite3
import subprocess
import textwrap
from pathlib import Path

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry

REPO_ROOT = Path(__file__).resolve().parents[4]
ANSIBLE_INVENTORY = REPO_ROOT / ".venv" / "bin" / "ansible-inventory"
POOL = Pool("172.31.251.0/24", "172.31.251.1", "172.31.251.10", "172.31.251.20")


def run_inventory(source, *args, check=True, env=None):
    full_env = dict(os.environ, ANSIBLE_NOCOLOR="1", **(env or {}))
    proc = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(source), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, env=full_env, timeout=120, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def plain(data):
    """ansible-inventory --list marks untrusted strings (all registry data) as {"__ansible_unsafe": value}."""
    if isinstance(data, dict):
        if set(data) == {"__ansible_unsafe"}:
            return data["__ansible_unsafe"]
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


def inventory_list(source):
    return plain(json.loads(run_inventory(source, "--list").stdout))


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def registry(tmp_path):
    """A registry with alpha (online, eu-north), beta (failed, eu north/2), gamma (provisioning, no location)
    and delta (destroyed)."""
    db = tmp_path / "state" / "fleet.db"
    db.parent.mkdir()
    with Registry(str(db), actor="test") as reg:
        with reg.transaction():
            for label, location in (("alpha", "eu-north"), ("beta", "eu north/2"), ("gamma", None),
                                    ("delta", "eu-west")):
                reg.ensure(dict(label=label, location=location), POOL)
            reg.ensure_identity("alpha", generate=lambda: b"\x01" * 32)
            reg.set_fields("alpha", status="online", node_id="a" * 64, container_id="c" * 64)
            reg.fail("beta", "boom")
            reg.destroy("delta", reason="gone")
    return db


def write_source(directory, body, name="x.fleet.yml"):
    path = Path(directory) / name
    path.write_text(textwrap.dedent(body))
    return path


def test_hosts_vars_and_groups(registry, tmp_path):
    before = digest(registry)
    source = write_source(tmp_path, """\
        plugin: fenrir.fleet.fleet
        db: state/fleet.db
        """)
    data = inventory_list(source)
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == ["alpha", "beta", "gamma"]  # destroyed delta left out by default
    alpha = hostvars["alpha"]
    assert alpha["ansible_host"] == "172.31.251.10"
    assert alpha["fleet_label"] == "alpha"
    assert alpha["fleet_ip"] == "172.31.251.10"
    assert alpha["fleet_status"] == "online"
    assert alpha["fleet_location"] == "eu-north"
    assert alpha["fleet_node_id"] == "a" * 64
    assert alpha["fleet_server_id"] == "fenrir-alpha"
    assert alpha["fleet_container_id"] == "c" * 64
    assert alpha["fleet_provider"] == "docker"
    assert alpha["fleet_has_identity"] is True
    assert alpha["fleet_address_held"] is True
    assert isinstance(alpha["fleet_created_at"], float)
    for host in hostvars.values():  # never secrets, never internal columns
        assert not {"fleet_secrets", "fleet_ip_int", "fleet_secrets_sha256"} & set(host)
    assert hostvars["beta"]["fleet_status"] == "failed"
    assert hostvars["beta"]["fleet_reason"] == "boom"
    assert hostvars["beta"]["ansible_host"] == "172.31.251.11"  # failed, address still held

    assert sorted(data["knarr_nodes"]["hosts"]) == ["alpha", "beta", "gamma"]
    assert data["fleet_status_online"]["hosts"] == ["alpha"]
    assert data["fleet_status_failed"]["hosts"] == ["beta"]
    assert data["fleet_status_provisioning"]["hosts"] == ["gamma"]
    assert data["fleet_location_eu_north"]["hosts"] == ["alpha"]
    assert data["fleet_location_eu_north_2"]["hosts"] == ["beta"]
    assert "fleet_status_destroyed" not in data
    assert not [g for g in data if g.startswith("fleet_location_") and "gamma" in data[g].get("hosts", [])]
    assert sorted(data["fleet_docker_host_local"]["hosts"]) == ["alpha", "beta", "gamma"]  # the controller's engine

    graph = run_inventory(source, "--graph").stdout
    assert "@knarr_nodes:" in graph and "@fleet_status_online:" in graph and "|  |--alpha" in graph
    assert digest(registry) == before


def test_include_destroyed_and_constructed(registry, tmp_path):
    source = write_source(tmp_path, f"""\
        plugin: fenrir.fleet.fleet
        registry: {registry}
        include_destroyed: true
        strict: true
        compose:
          ansible_connection: "'local'"
          knarr_node_location: fleet_location
          node_url: "'knarr://' ~ fleet_ip ~ ':9010'"
        keyed_groups:
          - key: fleet_provider
            prefix: provider
          - key: fleet_status
            prefix: st
        groups:
          with_identity: fleet_has_identity
          active: fleet_status != 'destroyed'
        """, name="all.fleet.yaml")
    data = inventory_list(source)
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == ["alpha", "beta", "delta", "gamma"]
    delta = hostvars["delta"]
    assert delta["fleet_status"] == "destroyed"
    assert delta["fleet_ip"] == "172.31.251.13"  # its last address ...
    assert delta["fleet_address_held"] is False
    assert "ansible_host" not in delta  # ... which it no longer holds
    assert data["fleet_status_destroyed"]["hosts"] == ["delta"]
    assert data["fleet_location_eu_west"]["hosts"] == ["delta"]
    assert hostvars["alpha"]["ansible_connection"] == "local"
    assert hostvars["alpha"]["knarr_node_location"] == "eu-north"
    assert hostvars["gamma"]["node_url"] == "knarr://172.31.251.12:9010"
    assert sorted(data["provider_docker"]["hosts"]) == ["alpha", "beta", "delta", "gamma"]
    assert data["st_online"]["hosts"] == ["alpha"]
    assert data["with_identity"]["hosts"] == ["alpha"]
    assert sorted(data["active"]["hosts"]) == ["alpha", "beta", "gamma"]


def test_strict_compose_error_fails(registry, tmp_path):
    source = write_source(tmp_path, f"""\
        plugin: fenrir.fleet.fleet
        registry: {registry}
        strict: true
        compose:
          broken: fleet_no_such_field.x
        """)
    proc = run_inventory(source, "--list", check=False, env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"})
    assert proc.returncode != 0
    assert "fleet_no_such_field" in proc.stderr


def test_only_fleet_files_are_claimed(registry, tmp_path):
    source = write_source(tmp_path, f"""\
        plugin: fenrir.fleet.fleet
        registry: {registry}
        """, name="inventory.yml")
    proc = run_inventory(source, "--list", check=False, env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"})
    assert proc.returncode != 0
    assert "fleet.yml" in proc.stderr or "verify_file" in proc.stderr or "Unable to parse" in proc.stderr


def test_missing_registry_is_reported(tmp_path):
    source = write_source(tmp_path, """\
        plugin: fenrir.fleet.fleet
        registry: nowhere/fleet.db
        """)
    proc = run_inventory(source, "--list", check=False, env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"})
    assert proc.returncode != 0
    assert "%s does not exist" % (tmp_path / "nowhere" / "fleet.db") in proc.stderr
    assert not (tmp_path / "nowhere").exists()


def test_other_schema_version_is_refused_not_migrated(tmp_path):
    db = tmp_path / "fleet.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE fleet_nodes (label TEXT PRIMARY KEY, ip TEXT, status TEXT)")
    conn.execute("INSERT INTO fleet_nodes VALUES ('old', '172.21.0.10', 'online')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    before = digest(db)
    source = write_source(tmp_path, """\
        plugin: fenrir.fleet.fleet
        registry: fleet.db
        """)
    proc = run_inventory(source, "--list", check=False, env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"})
    assert proc.returncode != 0
    stderr = " ".join(proc.stderr.split())
    assert "schema version 1" in stderr and "never migrated" in stderr
    assert digest(db) == before
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'nodes'").fetchone() is None
    conn.close()


def test_registry_text_is_never_templated(tmp_path):
    db = tmp_path / "fleet.db"
    with Registry(str(db), actor="test") as reg:
        with reg.transaction():
            reg.ensure(dict(label="alpha", location="{{ lookup('env', 'HOME') }}"), POOL)
    source = write_source(tmp_path, """\
        plugin: fenrir.fleet.fleet
        registry: fleet.db
        compose:
          where: fleet_location
        """)
    raw = json.loads(run_inventory(source, "--list").stdout)["_meta"]["hostvars"]["alpha"]
    assert raw["fleet_location"] == {"__ansible_unsafe": "{{ lookup('env', 'HOME') }}"}
    host = json.loads(run_inventory(source, "--host", "alpha").stdout)
    assert host["fleet_location"] == "{{ lookup('env', 'HOME') }}"
    assert host["where"] == "{{ lookup('env', 'HOME') }}"


def test_nodes_are_grouped_by_their_docker_host(tmp_path):
    db = tmp_path / "fleet.db"
    with Registry(str(db), actor="test") as reg:
        reg.ensure_host("dh-1.example.net", address="10.0.0.1")
        host = reg.get_host("dh-1.example.net")
        with reg.transaction():
            reg.place(dict(label="on-host"), Pool.for_subnet(host["subnet"]), docker_host="dh-1.example.net",
                      ports=(20000, 20099, 3), host_address="10.0.0.1")
            reg.place(dict(label="host-net"), None, docker_host="dh-1.example.net", network_mode="host",
                      ports=(20000, 20099, 3), host_address="10.0.0.1")
            reg.ensure(dict(label="local-one"), POOL)
    source = write_source(tmp_path, """\
        plugin: fenrir.fleet.fleet
        registry: fleet.db
        """)
    data = inventory_list(source)
    assert sorted(data["fleet_docker_host_dh_1_example_net"]["hosts"]) == ["host-net", "on-host"]
    assert data["fleet_docker_host_local"]["hosts"] == ["local-one"]
    hostvars = data["_meta"]["hostvars"]
    assert hostvars["on-host"]["fleet_docker_host"] == "dh-1.example.net" and hostvars["on-host"]["fleet_port"] == 20000
    assert hostvars["host-net"]["fleet_network_mode"] == "host" and "ansible_host" not in hostvars["host-net"]
