"""daemon.json as data, the bind address and the listeners (docker_daemon_config, the docker_host filters)."""
import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import docker_daemon_config as ddc
from ansible_collections.fenrir.fleet.plugins.filter.docker_host import docker_host_preflight

HOST = ["172.30.0.11", "10.0.0.5", "fd00:abcd:1::42"]


@pytest.mark.parametrize("address, why", [
    (None, "no address"), ("", "no address"), ("0.0.0.0", "wildcard"), ("::", "wildcard"),
    ("docker1.example", "not one literal IP"), ("172.30.0.99", "has no address 172.30.0.99"),
    ("127.0.0.1", "loopback"), ("fd00:abcd:1:0::42", "canonical form"), (["172.30.0.11"], "not one literal"),
])
def test_bind_addresses_refused(address, why):
    assert why in ddc.bind_problem(address, HOST)


@pytest.mark.parametrize("address", ["172.30.0.11", "fd00:abcd:1::42"])
def test_bind_addresses_accepted(address):
    assert ddc.bind_problem(address, HOST) == ""


def test_preflight_says_missing_overlay_peer_and_names_the_variables():
    problems = docker_host_preflight({"hosts": ["tcp://0.0.0.0:2375"], "tlsverify": False, "log-levle": "x"},
                                     "0.0.0.0", HOST)
    assert problems[0].startswith("missing overlay peer: docker_host_bind_address")
    assert "docker_host_daemon_options sets hosts, tlsverify" in problems[1]
    assert "log-levle" in problems[2]
    assert docker_host_preflight({"log-level": "warn"}, "172.30.0.11", HOST) == []
    assert docker_host_preflight({"features": {}}, "172.30.0.11", HOST, ["brand-new"]) == []
    assert docker_host_preflight({"brand-new": 1}, "172.30.0.11", HOST, ["brand-new"]) == []


def test_daemon_json_forces_the_owned_keys():
    config = ddc.daemon_config({"log-level": "warn", "hosts": ["tcp://0.0.0.0:2375"], "tls": False}, "172.30.0.11")
    assert config["hosts"] == ["fd://", "tcp://172.30.0.11:2376"]
    assert config["tls"] is True and config["tlsverify"] is True
    assert config["tlscacert"] == "/etc/docker/ca.pem" and config["tlskey"] == "/etc/docker/server-key.pem"
    assert config["log-level"] == "warn"
    assert list(config) == sorted(config)
    assert ddc.daemon_config({}, "fd00::1")["hosts"][1] == "tcp://[fd00::1]:2376"
    assert ddc.without_owned(config) == {"log-level": "warn"}


def test_the_allow_list_holds_what_20_10_knows():
    for key in ("log-level", "storage-driver", "default-address-pools", "live-restore", "features", "builder"):
        assert key in ddc.DOCKER_20_10_KEYS
    assert set(ddc.OWNED_KEYS) <= ddc.DOCKER_20_10_KEYS


SS = """LISTEN 0      4096     172.30.0.11:2376       0.0.0.0:*
LISTEN 0      128          0.0.0.0:22         0.0.0.0:*
LISTEN 0      128             [::]:22            [::]:*
"""


def test_listeners():
    assert ddc.listeners(SS) == ["172.30.0.11"]
    assert ddc.listener_problems(["172.30.0.11"], "172.30.0.11") == []
    assert "every address" in ddc.listener_problems(["0.0.0.0"], "172.30.0.11")[0]
    assert "every address ([::])" in ddc.listener_problems(ddc.listeners("LISTEN 0 1 [::]:2376 [::]:*"), "172.30.0.11")[0]
    assert "*" in ddc.listeners("LISTEN 0 1 *:2376 *:*")
    assert "not only on" in ddc.listener_problems(["172.30.0.11", "10.0.0.5"], "172.30.0.11")[0]
    assert "nothing listens" in ddc.listener_problems([], "172.30.0.11")[0]
    assert ddc.listeners("LISTEN 0 1 [fd00::42%eth0]:2376 [::]:*") == ["fd00::42"]
