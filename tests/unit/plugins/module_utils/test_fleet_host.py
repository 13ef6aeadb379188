"""fleet_host.py: a managed Docker host's record -- pending, connected only on the probe's word, decommissioned."""

import os

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_host
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry

PROVEN = dict(address="10.0.0.1", endpoint="tcp://10.0.0.1:2376", status="connected", engine_version="20.10.24",
              api_version="1.41", cert_fingerprint_sha256="AB:CD", cert_not_after="2027-03-02T02:57:21Z",
              memory_bytes=8 * 2 ** 30, problems=[])


def run(db, check_mode=False, **kw):
    params = dict(registry=db, key_file=None, name="h1", state="present", result=None, max_nodes=None, subnet=None,
                  fleet_range="172.21.0.0/16")
    params.update(kw)
    return fleet_host.run(params, check_mode=check_mode, diff=True)


def test_pending_when_configured_then_what_the_probe_proved(loc):
    first = run(loc, max_nodes=10)
    assert first["changed"] and first["host"]["status"] == "pending" and first["host"]["subnet"] == "172.21.1.0/24"
    assert first["host"]["max_nodes"] == 10 and first["blockers"] == []
    assert not run(loc, max_nodes=10)["changed"]
    proven = run(loc, result=PROVEN)["host"]
    assert proven["status"] == "connected" and proven["endpoint"] == "tcp://10.0.0.1:2376"
    assert proven["cert_fingerprint"] == "AB:CD" and proven["cert_not_after"] == 1803956241.0
    assert proven["engine_version"] == "20.10.24" and proven["memory_bytes"] == 8 * 2 ** 30
    assert not run(loc, result=PROVEN)["changed"]
    # Configured again: still connected (only a probe changes that); a failed probe disconnects it.
    assert run(loc, max_nodes=10)["host"]["status"] == "connected"
    lost = run(loc, result=dict(PROVEN, status="disconnected", problems=["mutual TLS failed", "plain HTTP served"]))
    assert lost["host"]["status"] == "disconnected" and lost["host"]["reason"] == "mutual TLS failed; plain HTTP served"
    assert run(loc, result=PROVEN)["host"]["reason"] is None


def test_the_host_s_word_is_not_a_status(db):
    with pytest.raises(ModuleFailure, match="result.status must be one of connected, disconnected"):
        run(db, result=dict(PROVEN, status="ready"))


def test_check_mode_writes_nothing(db):
    out = run(db, check_mode=True, result=PROVEN)
    assert out["changed"] and out["host"]["status"] == "connected" and not os.path.exists(db)


def test_decommission_is_refused_while_nodes_live_on_it(loc):
    run(loc, result=PROVEN)
    with Registry(loc) as reg:
        host = reg.get_host("h1")
        with reg.transaction():
            reg.place(dict(label="n1"), Pool.for_subnet(host["subnet"]), docker_host="h1")
    assert run(loc, state="query")["blockers"] == ["knarr node 'n1' lives on it"]
    with pytest.raises(ModuleFailure) as err:
        run(loc, state="absent")
    assert "not decommissioned: knarr node 'n1' lives on it" in str(err.value)
    assert err.value.result["blockers"] == ["knarr node 'n1' lives on it"]
    with Registry(loc) as reg:
        with reg.transaction():
            reg.destroy("n1")
    gone = run(loc, state="absent")
    assert gone["changed"] and gone["host"]["status"] == "decommissioned"
    again = run(loc)  # configured again: pending, with a subnet again
    assert again["host"]["status"] == "pending" and again["host"]["subnet"]
