"""A provisioning run killed with SIGKILL at any point leaves a state the next run converges from.

On SQLite at every point; on PostgreSQL at two (for time): after the registry committed the allocations and before
any container exists, and after the containers were made and before the registry recorded them (the server sees
the worker's connection drop, its session ends)."""
import pytest

from conftest import CLIENT

POINTS = ["after_allocate", "after_create", "after_put", "before_start", "before_record"]
CASES = [("sqlite", point) for point in POINTS] + [("postgresql", "after_allocate"), ("postgresql", "before_record")]
HOSTS = {"it-a": {}, "it-b": {}, "it-c": {}}


def assert_converged(fleet, hosts=None):
    hosts = HOSTS if hosts is None else hosts
    rows = fleet.rows()
    containers = fleet.containers()
    active = {label: r for label, r in rows.items() if r["status"] != "destroyed"}
    assert set(active) == set(hosts), rows
    assert all(r["status"] == "online" for r in active.values()), {k: r["status"] for k, r in rows.items()}
    # No orphan: every fenrir container of the test belongs to an active record, at its address.
    assert set(containers) == set(active), (containers, active)
    for label, c in containers.items():
        assert c["status"] == "running" and c["ip"] == active[label]["ip"] and c["id"] == active[label]["container_id"]
    # No leaked address: exactly one reserved address per node, the first three of the pool.
    assert sorted(r["ip"] for r in active.values()) == [fleet.ip(0), fleet.ip(1), fleet.ip(2)]
    assert all(r["ip_int"] is not None for r in active.values())


@pytest.mark.parametrize("any_fleet,point", CASES, indirect=["any_fleet"], ids=["%s-%s" % c for c in CASES])
def test_killed_run_then_rerun_converges(any_fleet, point):
    fleet = any_fleet
    hosts = {fleet.label(name): {} for name in "abc"}
    fleet.set_hosts(hosts)
    killed = fleet.play("provision.yml", env={"FENRIR_FAULT_POINT": point}, check=False)
    # The run died of the SIGKILL at that point, not of anything else.
    assert killed.rc != 0 and "A worker was found in a dead state" in killed.stdout + killed.stderr, \
        "the fault point %s was never reached: %s" % (point, killed.errors())
    fleet.play("provision.yml")
    assert_converged(fleet, hosts)
    assert fleet.play("provision.yml").changed() == 0


def test_failed_node_is_cleaned_up_and_retried(fleet):
    broken = "raise RuntimeError('boom at import')\n"
    fleet.set_hosts({"it-a": {}, "it-b": {"knarr_node_echo_source": broken}})
    result = fleet.play("provision.yml", check=False)
    assert result.rc != 0
    assert "it-b" in result.errors() and "exited" in result.errors()
    rows = fleet.rows()
    assert rows["it-a"]["status"] == "online"
    assert rows["it-b"]["status"] == "failed" and "exited" in rows["it-b"]["reason"]
    assert "it-b" not in fleet.containers()  # the container it got was removed
    fleet.set_hosts({"it-a": {}, "it-b": {}})
    fleet.play("provision.yml")
    assert fleet.rows()["it-b"]["status"] == "online" and fleet.rows()["it-b"]["reason"] is None
    assert CLIENT.containers.get("fenrir-it-b").status == "running"


def test_killed_decommission_then_rerun_converges(fleet):
    """Killed after the containers are removed, before their records are destroyed: the next run finishes."""
    fleet.set_hosts(HOSTS)
    fleet.play("provision.yml")
    killed = fleet.play("decommission.yml", env={"FENRIR_FAULT_POINT": "after_remove"}, check=False)
    assert killed.rc != 0 and "A worker was found in a dead state" in killed.stdout + killed.stderr
    assert fleet.containers() == {}
    assert all(r["status"] == "online" for r in fleet.rows().values())  # not yet destroyed
    fleet.play("decommission.yml")
    rows = fleet.rows()
    assert all(r["status"] == "destroyed" and r["ip_int"] is None for r in rows.values()), rows
    assert fleet.play("decommission.yml").changed() == 0
