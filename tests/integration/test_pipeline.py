"""The seed's pipeline as AWX would chain it: prepare-payload -> setup-docker -> wait-for-boot -> register-fleet."""
import base64
import json
import os
import stat

from conftest import CLIENT


def _result(run):
    """The node's result in the seed's contract, as the stage printed it."""
    return run.task_result("Result of the node")["msg"]


def test_pipeline_stages_provision_one_node(fleet, tmp_path):
    fleet.set_hosts({})
    payload_file = tmp_path / "payload.json"
    prepared = fleet.play("prepare_payload.yml", "-e", "fenrir_label=it-p", "-e", "fenrir_location=lab",
                          "-e", "fenrir_payload_file=%s" % payload_file)
    assert stat.S_IMODE(os.stat(payload_file).st_mode) == 0o600
    payload = json.loads(payload_file.read_text())
    assert payload["label"] == "it-p" and payload["location"] == "lab" and len(payload["nonce"]) == 32
    # The payload names the node; its identity was reserved in the registry (encrypted) and stays there.
    assert "node_db_b64" not in payload and len(payload["node_id"]) == 64
    row = fleet.rows()["it-p"]
    assert row["status"] == "provisioning" and row["ip"] == "172.24.0.10"
    assert row["node_id"] == payload["node_id"] and row["nonce"] == payload["nonce"]
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry
    with Registry(fleet.registry) as reg:
        seed = reg.get_seed("it-p")
    from ansible_collections.fenrir.fleet.plugins.module_utils import identity
    assert identity.node_id_from_seed(seed) == payload["node_id"]
    for secret in (seed.hex(), base64.b64encode(seed).decode(), base64.b64encode(identity.build_node_db(seed)).decode()):
        assert secret not in prepared.stdout and secret not in payload_file.read_text()
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps({"payload_json": payload_file.read_text()}))

    # setup-docker: a dry run unless told otherwise; it changes nothing.
    before = fleet.snapshot()
    dry = fleet.play("setup_docker.yml", "-e", "@%s" % extra)
    assert _result(dry) == {"status": "dry_run", "ip": "172.24.0.10", "server_id": "fenrir-it-p", "provider": "docker"}
    assert fleet.snapshot() == before
    # An AWX survey answers fenrir_dry_run with the choice "true" / "false"; anything else is refused.
    assert _result(fleet.play("setup_docker.yml", "-e", "@%s" % extra, "-e", "fenrir_dry_run=true"))["status"] == "dry_run"
    refused = fleet.play("setup_docker.yml", "-e", "@%s" % extra, "-e", "fenrir_dry_run=False", check=False)
    assert refused.rc != 0 and "fenrir_dry_run" in refused.stdout
    assert fleet.snapshot() == before

    # A payload that is not the registry's latest for its label (stale nonce, another identity) changes nothing.
    for field, value in (("nonce", "0" * 32), ("node_id", "ab" * 32)):
        stale = tmp_path / ("stale-%s.json" % field)
        stale.write_text(json.dumps({"payload_json": json.dumps(dict(payload, **{field: value}))}))
        bad = fleet.play("setup_docker.yml", "-e", "@%s" % stale, "-e", '{"dry_run": false}', check=False)
        assert bad.rc != 0 and "run prepare-payload" in bad.errors() and fleet.snapshot() == before
        assert _result(bad)["status"] == "error"

    real = fleet.play("setup_docker.yml", "-e", "@%s" % extra, "-e", "fenrir_dry_run=false")
    assert _result(real) == {"status": "ok", "ip": "172.24.0.10", "server_id": "fenrir-it-p", "provider": "docker"}
    assert fleet.rows()["it-p"]["status"] == "running"
    assert seed.hex() not in real.stdout

    booted = fleet.play("wait_for_boot.yml", "-e", "@%s" % extra)
    assert _result(booted)["status"] == "ok" and booted.changed() == 0
    assert fleet.rows()["it-p"]["status"] == "running"

    registered = fleet.play("register_fleet.yml", "-e", "@%s" % extra)
    assert _result(registered)["status"] == "ok"
    row = fleet.rows()["it-p"]
    assert row["status"] == "online" and row["ip"] == "172.24.0.10"
    assert row["node_id"] == payload["node_id"]
    # Running setup-docker again for the same payload changes nothing.
    assert fleet.play("setup_docker.yml", "-e", "@%s" % extra, "-e", '{"dry_run": false}').changed() == 0

    # A node that does not answer fails wait-for-boot, with the seed's error result.
    CLIENT.containers.get("fenrir-it-p").stop(timeout=1)
    down = fleet.play("wait_for_boot.yml", "-e", "@%s" % extra, "-e", "knarr_node_boot_timeout=3", check=False)
    assert down.rc != 0 and "it-p" in down.errors()
    assert _result(down) == {"status": "error", "ip": "172.24.0.10", "server_id": "fenrir-it-p", "provider": "docker"}
