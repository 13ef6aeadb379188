"""tenant_status.py: a tenant's status as an operator needs it, from docker inspect alone."""

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_status import (
    classify, last_health_output, limits, published_ports)


def inspect(status="running", exit_code=0, health=None, oom=False, restarting=False, restart_count=0, error="",
            memory=32 * 2 ** 20, health_log=None):
    state = {"Status": status, "Running": status == "running", "Restarting": restarting, "OOMKilled": oom,
             "ExitCode": exit_code, "Error": error, "StartedAt": "2026-12-02T10:00:00Z",
             "FinishedAt": "0001-01-01T00:00:00Z", "Paused": status == "paused"}
    if health:
        state["Health"] = {"Status": health, "Log": health_log or []}
    return {"State": state, "RestartCount": restart_count, "HostConfig": {"Memory": memory}}


CASES = {
    "running, no health check": (inspect(), "running", "none", None, None),
    "running and healthy": (inspect(health="healthy"), "running", "healthy", None, None),
    "running, health starting": (inspect(health="starting"), "starting", "starting", None, "not passed yet"),
    "running but unhealthy": (inspect(health="unhealthy", health_log=[{"ExitCode": 1, "Output": "503\n"}]),
                              "running", "unhealthy", None, "health check failing: exit 1, 503"),
    "restarting": (inspect(status="restarting", restarting=True, exit_code=3, restart_count=2), "starting", "none", 3,
                   "restarting (restart 2) after it exited with code 3"),
    "exited 0": (inspect(status="exited", exit_code=0), "stopped", "none", 0, "exited with code 0"),
    "exited non-zero": (inspect(status="exited", exit_code=3), "failed", "none", 3, "exited with code 3"),
    "OOM killed": (inspect(status="exited", exit_code=137, oom=True), "failed", "none", 137,
                   "exceeding its memory limit of 32 MB (OOMKilled"),
    "SIGKILL without the OOM flag": (inspect(status="exited", exit_code=137), "failed", "none", 137,
                                     "OOM killer does at the memory limit of 32 MB"),
    "SIGTERM not handled": (inspect(status="exited", exit_code=143), "failed", "none", 143, "(SIGTERM)"),
    "dead": (inspect(status="dead", exit_code=255, error="device busy"), "failed", "none", 255, "dead"),
    "paused": (inspect(status="paused"), "stopped", "none", None, "paused"),
    "created, never started": (inspect(status="created"), "stopped", "none", None, "never started"),
    "an unknown state": (inspect(status="weird"), "failed", "none", 0, "unknown container state"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_classify(case):
    info, status, health, exit_code, words = CASES[case]
    got = classify(info)
    assert (got["status"], got["health"], got["exit_code"]) == (status, health, exit_code)
    if words is None:
        assert got["reason"] is None
    else:
        assert words in got["reason"]


def test_health_is_never_assumed():
    assert classify(inspect())["health"] == "none"
    assert classify(inspect(health="bogus"))["health"] == "none"
    assert last_health_output(inspect()) is None


def test_oom_flag_is_dockers():
    assert classify(inspect(status="exited", exit_code=137, oom=True))["oom_killed"] is True
    assert classify(inspect(status="exited", exit_code=137))["oom_killed"] is False


def test_published_ports_and_limits():
    info = {"HostConfig": {"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}],
                                            "53/udp": [{"HostIp": "", "HostPort": "5353"}], "9090/tcp": None},
                           "NanoCpus": 500_000_000, "Memory": 64 * 2 ** 20, "MemorySwap": 64 * 2 ** 20,
                           "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 2}}}
    assert published_ports(info) == [
        dict(container_port=53, protocol="udp", host_ip="", host_port=5353),
        dict(container_port=8080, protocol="tcp", host_ip="127.0.0.1", host_port=18080)]
    assert limits(info) == dict(cpu=500, memory=64, memory_swap=64, restart_policy="on-failure:2")
    assert limits({"HostConfig": {"MemorySwap": -1}}) == dict(cpu=None, memory=None, memory_swap=-1,
                                                              restart_policy="no")
    assert published_ports(None) == []
