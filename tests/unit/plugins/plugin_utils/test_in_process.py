"""in_process.py: the controller-side action that runs a fleet module in the worker.

module_specs.execute is replaced by a recorder (no registry, no Docker); the task, connection and
play context are the few attributes ActionBase.run and InProcessModuleAction read."""

import json
from types import SimpleNamespace

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.module_specs import ModuleFailure
from ansible_collections.fenrir.fleet.plugins.plugin_utils import in_process

SECRET = "U1FMaXRlIGZvcm1hdCAzAHNlY3JldC1ub2RlLWRiLWZvci10ZXN0cw=="
OTHER_SECRET = "U1FMaXRlIGZvcm1hdCAzAGFub3RoZXItbm9kZS1kYi1mb3ItdGVzdHM="


class Knarr(in_process.InProcessModuleAction):
    MODULE = "knarr_container"
    NEEDS_DOCKER = True


class FleetNode(in_process.InProcessModuleAction):
    MODULE = "fleet_node"
    NEEDS_DOCKER = False


def make_action(cls, args, transport="local", play_connection=None, check_mode=False, diff=False):
    task = SimpleNamespace(args=dict(args), async_val=0, check_mode=check_mode, diff=diff,
                           action="fenrir.fleet.%s" % cls.MODULE)
    connection = SimpleNamespace(transport=transport, _shell=SimpleNamespace(tmpdir=None))
    play_context = SimpleNamespace(connection=play_connection or transport)
    action = cls(task, connection, play_context, loader=None, templar=None)
    action.remote_calls = []

    def _execute_module(module_name=None, module_args=None, task_vars=None, **kw):
        action.remote_calls.append(dict(module_name=module_name, module_args=module_args, task_vars=task_vars))
        return dict(changed=False, remote=True)
    action._execute_module = _execute_module
    return action


@pytest.fixture
def executed(monkeypatch):
    """Replaces module_specs.execute; ``executed.result`` is what it returns (or raises, if an exception)."""
    state = SimpleNamespace(calls=[], result=dict(changed=False))

    def execute(name, params, check_mode, diff):
        state.calls.append(dict(name=name, params=params, check_mode=check_mode, diff=diff))
        if isinstance(state.result, Exception):
            raise state.result
        return state.result
    monkeypatch.setattr(in_process, "execute", execute)
    monkeypatch.setattr(in_process, "HAS_DOCKER", True)
    return state


def knarr_args(**kw):
    args = dict(registry="/srv/fleet/fleet.db",
                nodes=[dict(label="a", node_db_b64=SECRET), dict(label="b", node_db_b64=OTHER_SECRET)])
    args.update(kw)
    return args


def assert_hidden(result, *secrets):
    text = json.dumps(result)
    for secret in secrets:
        assert secret not in text


# --------------------------------------------------------------------------- in process


def test_runs_in_process_with_validated_parameters(executed):
    executed.result = dict(changed=True, nodes=[dict(label="a")])
    action = make_action(Knarr, knarr_args(), check_mode=True, diff=True)
    result = action.run(task_vars={})
    assert result["changed"] is True and result["nodes"] == [dict(label="a")]
    assert action.remote_calls == []
    [call] = executed.calls
    assert call["name"] == "knarr_container" and call["check_mode"] is True and call["diff"] is True
    assert call["params"]["state"] == "started" and call["params"]["parallelism"] == 8  # defaults filled
    assert call["params"]["docker_host"] is None and call["params"]["timeout"] == 60


def test_secret_node_dbs_are_removed_from_the_result(executed):
    executed.result = dict(changed=True, msg="wrote %s" % SECRET,
                           nodes=[dict(label="a", echo=SECRET), dict(label="b", note="db=%s;" % OTHER_SECRET)])
    result = make_action(Knarr, knarr_args()).run(task_vars={})
    assert_hidden(result, SECRET, OTHER_SECRET)
    assert result["nodes"][0]["label"] == "a" and result["nodes"][1]["note"].startswith("db=")
    assert "********" in result["msg"]


def test_secret_is_removed_from_a_failure_too(executed):
    executed.result = ModuleFailure("node 'a' failed with %s" % SECRET, dict(failed_nodes=["a"], leaked=[SECRET]))
    result = make_action(Knarr, knarr_args()).run(task_vars={})
    assert result["failed"] is True and result["failed_nodes"] == ["a"]
    assert result["msg"].startswith("node 'a' failed with ")
    assert_hidden(result, SECRET)


def test_fleet_node_top_level_node_db_is_no_log(executed):
    executed.result = dict(changed=True, record=dict(label="a", node_db_b64=SECRET))
    result = make_action(FleetNode, dict(db="/srv/fleet/fleet.db", label="a", node_db_b64=SECRET)).run(task_vars={})
    assert_hidden(result, SECRET)
    assert executed.calls[0]["params"]["node_db_b64"] == SECRET  # the module itself still gets it


def test_fleet_node_secret_inside_nodes_is_no_log(executed):
    executed.result = dict(changed=True, echo=[SECRET])
    args = dict(db="/srv/fleet/fleet.db", nodes=[dict(label="a", node_db_b64=SECRET)])
    assert_hidden(make_action(FleetNode, args).run(task_vars={}), SECRET)


# --------------------------------------------------------------------------- argument errors


def test_missing_required_argument_fails_with_a_message(executed):
    result = make_action(Knarr, dict(nodes=[dict(label="a")])).run(task_vars={})
    assert result["failed"] is True
    assert "registry" in result["msg"] and "missing required" in result["msg"]
    assert executed.calls == []


def test_mutually_exclusive_and_choices_are_reported_together(executed):
    result = make_action(Knarr, knarr_args(labels=["a"], state="gone")).run(task_vars={})
    assert result["failed"] is True and executed.calls == []
    assert "mutually exclusive" in result["msg"] and "nodes|labels" in result["msg"]
    assert "state" in result["msg"] and "gone" in result["msg"]


def test_unknown_option_fails(executed):
    result = make_action(FleetNode, dict(db="/x", label="a", colour="red")).run(task_vars={})
    assert result["failed"] is True and "colour" in result["msg"]
    assert executed.calls == []


def test_a_secret_echoed_in_a_validation_message_is_removed(executed):
    result = make_action(Knarr, knarr_args(state=SECRET)).run(task_vars={})
    assert result["failed"] is True and "state" in result["msg"]
    assert_hidden(result, SECRET)


def test_module_failure_is_a_failed_result_not_an_exception(executed):
    executed.result = ModuleFailure("node 'a', field 'ip': 10.0.0.1 is outside the pool")
    result = make_action(Knarr, knarr_args()).run(task_vars={})
    assert result["failed"] is True and result["msg"] == "node 'a', field 'ip': 10.0.0.1 is outside the pool"


# --------------------------------------------------------------------------- the ordinary way


@pytest.mark.parametrize("transport", ["ssh", "community.docker.docker", "ansible.builtin.paramiko_ssh"])
def test_non_local_connection_executes_the_module_remotely(executed, transport):
    args = knarr_args()
    action = make_action(Knarr, args, transport=transport)
    result = action.run(task_vars={"inventory_hostname": "h1"})
    assert executed.calls == []
    assert action.remote_calls == [dict(module_name="fenrir.fleet.knarr_container", module_args=args,
                                        task_vars={"inventory_hostname": "h1"})]
    assert result["remote"] is True


@pytest.mark.parametrize("transport, play_connection", [
    ("local", "ssh"), ("ansible.builtin.local", "ssh"), ("ssh", "local"), ("ssh", "ansible.builtin.local")])
def test_local_transport_or_play_connection_runs_in_process(executed, transport, play_connection):
    action = make_action(Knarr, knarr_args(), transport=transport, play_connection=play_connection)
    action.run(task_vars={})
    assert len(executed.calls) == 1 and action.remote_calls == []


def test_without_the_docker_sdk_docker_modules_run_remotely(executed, monkeypatch):
    monkeypatch.setattr(in_process, "HAS_DOCKER", False)
    knarr = make_action(Knarr, knarr_args())
    knarr.run(task_vars={})
    assert executed.calls == [] and knarr.remote_calls[0]["module_name"] == "fenrir.fleet.knarr_container"
    node = make_action(FleetNode, dict(db="/x", label="a"))
    node.run(task_vars={})
    assert node.remote_calls == [] and executed.calls[0]["name"] == "fleet_node"
