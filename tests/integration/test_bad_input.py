"""Bad input stops the run before any container or record is written, naming the node and the field."""
import base64
import json
import os
import sqlite3
import tempfile

import pytest

from conftest import CLIENT


def node_db(rows, key_type="BLOB", table=True):
    fd, path = tempfile.mkstemp()
    os.close(fd)
    db = sqlite3.connect(path)
    if table:
        db.execute("CREATE TABLE node_identity (key_bytes %s)" % key_type)
        for r in rows:
            db.execute("INSERT INTO node_identity VALUES (?)", (r,))
    else:
        db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with open(path, "rb") as fh:
        data = fh.read()
    os.unlink(path)
    return base64.b64encode(data).decode()


GOOD = {"it-a": {}}
CASES = {
    "base64 that does not decode": ({"knarr_node_db_b64": "!!not base64!!"}, "node_db_b64", "base64"),
    "node.db that is not SQLite": ({"knarr_node_db_b64": base64.b64encode(b"hello world").decode()},
                                   "node_db_b64", "SQLite"),
    "node.db without identity table": ({"knarr_node_db_b64": node_db([], table=False)}, "node_db_b64", "node_identity"),
    "node.db with no identity": ({"knarr_node_db_b64": node_db([])}, "node_db_b64", "no identity"),
    "key of the wrong length": ({"knarr_node_db_b64": node_db([os.urandom(31)])}, "node_db_b64", "31 bytes"),
    "pinned ip outside the subnet": ({"knarr_node_ip": "10.9.9.9"}, "ip", "outside subnet"),
    "pinned ip taken by another label": ({"knarr_node_ip": "172.24.0.10"}, "ip", "already held by node 'it-a'"),
    "pinned ip is the gateway": ({"knarr_node_ip": "172.24.0.1"}, "ip", "gateway"),
    "image not present": ({"knarr_node_image": "fenrir-no-such-image:1"}, "image", "not present"),
    "memory that is not a size": ({"knarr_node_memory": "lots"}, "memory", "not a size"),
    "provisioner id that is not hex": ({"knarr_node_provisioner_node_id": "xyz\n[evil]"}, "provisioner_node_id", "hex"),
    # What the role's argument spec says (checked by the preflight for every host at once).
    "a yes/no that is neither": ({"knarr_node_wait": "perhaps"}, "wait", "bool"),
    "a port that is not a number": ({"knarr_node_cockpit_port": "eighty"}, "cockpit_port", "int"),
    "a network mode that does not exist": ({"knarr_node_network_mode": "overlay"}, "network_mode", "one of"),
}


@pytest.fixture(scope="module")
def provisioned(module_fleet):
    module_fleet.set_hosts(GOOD)
    module_fleet.play("provision.yml")
    return module_fleet


def refused(fleet, result, node, field, words):
    assert result.rc != 0
    errors = result.errors()
    assert ("node %r" % node) in errors or ("node '%s'" % node) in errors, errors
    assert ("field %r" % field) in errors or ("field '%s'" % field) in errors, errors
    assert words in errors, errors


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_host_input_changes_nothing(provisioned, case):
    hostvars, field, words = CASES[case]
    before = provisioned.snapshot()
    provisioned.set_hosts(dict(GOOD, **{"it-x": hostvars}))
    result = provisioned.play("provision.yml", check=False)
    refused(provisioned, result, "it-x", field, words)
    assert provisioned.snapshot() == before
    assert "it-x" not in provisioned.rows()


def test_unsafe_label_changes_nothing(provisioned):
    before = provisioned.snapshot()
    provisioned.set_hosts(dict(GOOD, **{"It_X": {}}))
    result = provisioned.play("provision.yml", check=False)
    refused(provisioned, result, "It_X", "label", "a-z")
    assert provisioned.snapshot() == before


def test_exhausted_pool_changes_nothing(provisioned):
    before = provisioned.snapshot()
    provisioned.set_hosts(dict(GOOD, **{"it-x": {"knarr_node_pool_start": "172.24.0.10",
                                                 "knarr_node_pool_end": "172.24.0.10"},
                                        "it-a": {"knarr_node_pool_start": "172.24.0.10",
                                                 "knarr_node_pool_end": "172.24.0.10"}}))
    result = provisioned.play("provision.yml", check=False)
    refused(provisioned, result, "it-x", "ip", "exhausted")
    assert provisioned.snapshot() == before


def test_overlapping_subnet_changes_nothing(provisioned):
    before = provisioned.snapshot()
    provisioned.set_hosts({"it-x": {"knarr_node_network": "fenrir-itest-other", "knarr_node_subnet": "172.24.0.0/25",
                                    "knarr_node_gateway": "172.24.0.1", "knarr_node_pool_end": "172.24.0.100"}})
    result = provisioned.play("provision.yml", check=False)
    assert result.rc != 0
    assert "field 'subnet'" in result.errors() and "overlaps" in result.errors(), result.errors()
    assert provisioned.snapshot() == before
    assert not CLIENT.networks.list(names=["fenrir-itest-other"])


def _payload(**overrides):
    payload = {"label": "it-p", "location": "lab", "node_db_b64": node_db([os.urandom(32)])}
    payload.update(overrides)
    return payload


@pytest.mark.parametrize("payload_json,dry_run,field,words", [
    ("{not json", False, "payload_json", "not valid JSON"),
    (json.dumps({"label": "it-p", "location": "lab"}), False, "payload_json.node_id", "required"),
    (json.dumps({"label": "it-p", "location": "lab", "node_id": "XYZ"}), False, "payload_json.node_id", "64 lowercase hex"),
    (json.dumps({"label": "it-p", "node_db_b64": "AAAA"}), False, "payload_json.location", "required"),
    (json.dumps(_payload()), "false", "dry_run", "must be a boolean"),
    (json.dumps(_payload(node_db_b64="@@@")), False, "payload_json.node_db_b64", "base64"),
    (json.dumps(_payload(node_db_b64=node_db([os.urandom(16)]))), False, "payload_json.node_db_b64", "16 bytes"),
])
def test_bad_payload_changes_nothing(provisioned, tmp_path, payload_json, dry_run, field, words):
    before = provisioned.snapshot()
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"payload_json": payload_json, "dry_run": dry_run}))
    result = provisioned.play("setup_docker.yml", "-e", "@%s" % extra, check=False)
    assert result.rc != 0
    assert "field %r" % field in result.errors() or "field '%s'" % field in result.errors(), result.errors()
    assert words in result.errors(), result.errors()
    assert provisioned.snapshot() == before
