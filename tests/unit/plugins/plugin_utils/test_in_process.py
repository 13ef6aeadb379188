"""in_process.py: the controller-side action that runs a fleet module's logic in the worker.

The module's ``run`` is replaced by a recorder (no registry, no Docker); its argument spec is the real one. The
task, connection and play context are the few attributes ActionBase.run and InProcessModuleAction read.
tests/integration/test_execution_paths.py runs the real modules both ways and compares them."""

import json
import os
from types import SimpleNamespace

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_registry, knarr_container
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import ModuleFailure
from ansible_collections.fenrir.fleet.plugins.plugin_utils import in_process

SECRET = "U1FMaXRlIGZvcm1hdCAzAHNlY3JldC1ub2RlLWRiLWZvci10ZXN0cw=="
OTHER_SECRET = "U1FMaXRlIGZvcm1hdCAzAGFub3RoZXItbm9kZS1kYi1mb3ItdGVzdHM="


class Recorder:
    """Stands in for a module's logic: its real NAME and ARGUMENT_SPEC, a recording run()."""

    def __init__(self, logic):
        self.NAME, self.ARGUMENT_SPEC = logic.NAME, logic.ARGUMENT_SPEC
        self.REQUIREMENTS = getattr(logic, "REQUIREMENTS", ())
        self.secret_values = getattr(logic, "secret_values", lambda params: set())
        self.calls, self.result, self.failure, self.environ = [], dict(changed=False), None, {}

    def run(self, params, check_mode, diff):
        self.calls.append(dict(params=params, check_mode=check_mode, diff=diff))
        self.environ = dict(os.environ)
        if self.failure is not None:
            raise self.failure
        return dict(self.result)


def make_action(logic, args, transport="local", check_mode=False, diff=False, become=False, environment=None):
    cls = type("Action", (in_process.InProcessModuleAction,), dict(LOGIC=logic))
    task = SimpleNamespace(args=dict(args), async_val=0, check_mode=check_mode, diff=diff, environment=environment,
                           action="fenrir.fleet.%s" % logic.NAME)
    connection = SimpleNamespace(transport=transport, _shell=SimpleNamespace(
        tmpdir=None, env_prefix=lambda **kw: " ".join("%s=%s" % i for i in kw.items())))
    play_context = SimpleNamespace(connection=transport, become=become)
    templar = SimpleNamespace(template=lambda data: data)
    action = cls(task, connection, play_context, loader=None, templar=templar, shared_loader_obj=None)
    action.remote_calls = []

    def _execute_module(module_name=None, module_args=None, task_vars=None, **kw):
        action.remote_calls.append(dict(module_name=module_name, module_args=module_args, task_vars=task_vars))
        return dict(changed=False, remote=True)
    action._execute_module = _execute_module
    return action


@pytest.fixture
def knarr():
    return Recorder(knarr_container)


@pytest.fixture
def registry():
    return Recorder(fleet_registry)


def knarr_args(**kw):
    args = dict(registry="/srv/fleet/fleet.db", nodes=[dict(label="a", config_overrides=dict(mail=dict(
        smtp_password=SECRET))), dict(label="b", config_overrides=dict(mail=dict(smtp_password=OTHER_SECRET)))])
    args.update(kw)
    return args


def assert_hidden(result, *secrets):
    text = json.dumps(result)
    for secret in secrets:
        assert secret not in text


# --------------------------------------------------------------------------- in process


def test_runs_in_process_with_validated_parameters(knarr):
    knarr.result = dict(changed=True, nodes=[dict(label="a")])
    action = make_action(knarr, knarr_args(), check_mode=True, diff=True)
    result = action.run(task_vars={})
    assert result["changed"] is True and result["nodes"] == [dict(label="a")]
    assert action.remote_calls == []
    [call] = knarr.calls
    assert call["check_mode"] is True and call["diff"] is True
    assert call["params"]["state"] == "started" and call["params"]["parallelism"] == 8  # defaults filled
    assert call["params"]["nodes"][0]["memory"] == "256m"  # sub-option defaults too
    assert call["params"]["docker_host"] == "unix:///var/run/docker.sock" and call["params"]["timeout"] == 60


def test_secrets_in_overrides_are_removed_from_the_result(knarr):
    knarr.result = dict(changed=True, msg="wrote %s" % SECRET,
                        nodes=[dict(label="a", echo=SECRET), dict(label="b", note="db=%s;" % OTHER_SECRET)])
    result = make_action(knarr, knarr_args()).run(task_vars={})
    assert_hidden(result, SECRET, OTHER_SECRET)
    assert result["nodes"][0]["label"] == "a" and result["nodes"][1]["note"].startswith("db=")
    assert "********" in result["msg"]


def test_secret_is_removed_from_a_failure_too(knarr):
    knarr.failure = ModuleFailure("node 'a' failed with %s" % SECRET, dict(failed_nodes=["a"], leaked=[SECRET]))
    result = make_action(knarr, knarr_args()).run(task_vars={})
    assert result["failed"] is True and result["failed_nodes"] == ["a"]
    assert result["msg"].startswith("node 'a' failed with ")
    assert_hidden(result, SECRET)


def test_registry_top_level_node_db_is_no_log(registry):
    registry.result = dict(changed=True, record=dict(label="a", node_db_b64=SECRET))
    args = dict(registry="/srv/fleet/fleet.db", label="a", node_db_b64=SECRET)
    assert_hidden(make_action(registry, args).run(task_vars={}), SECRET)
    assert registry.calls[0]["params"]["node_db_b64"] == SECRET  # the module itself still gets it


def test_registry_secret_inside_nodes_is_no_log(registry):
    registry.result = dict(changed=True, echo=[SECRET])
    args = dict(registry="/srv/fleet/fleet.db", nodes=[dict(label="a", node_db_b64=SECRET)])
    assert_hidden(make_action(registry, args).run(task_vars={}), SECRET)


def test_a_deprecated_alias_is_reported_as_ansiblemodule_reports_it(registry):
    result = make_action(registry, dict(db="/srv/fleet/fleet.db", label="a")).run(task_vars={})
    assert registry.calls[0]["params"]["registry"] == "/srv/fleet/fleet.db"
    [deprecation] = result["deprecations"]
    assert deprecation["msg"] == "Alias 'db' is deprecated. See the module docs for more information"
    assert deprecation["version"] == "2.0.0" and deprecation["collection_name"] == "fenrir.fleet"


def test_the_tasks_environment_is_applied_while_the_module_runs(registry, monkeypatch):
    monkeypatch.delenv("FENRIR_ACTOR", raising=False)
    action = make_action(registry, dict(registry="/x", label="a"), environment=[dict(FENRIR_ACTOR="ops@ci")])
    action.run(task_vars={})
    assert registry.environ["FENRIR_ACTOR"] == "ops@ci"
    assert "FENRIR_ACTOR" not in os.environ  # and taken away again


def test_docker_host_from_the_tasks_environment_is_the_options_fallback(knarr, monkeypatch):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    action = make_action(knarr, knarr_args(), environment=[dict(DOCKER_HOST="tcp://127.0.0.1:2375")])
    action.run(task_vars={})
    assert knarr.calls[0]["params"]["docker_host"] == "tcp://127.0.0.1:2375"


# --------------------------------------------------------------------------- argument errors


def test_missing_required_argument_fails_with_a_message(knarr):
    result = make_action(knarr, dict(nodes=[dict(label="a")])).run(task_vars={})
    assert result["failed"] is True
    assert "registry" in result["msg"] and "missing required" in result["msg"]
    assert knarr.calls == []


def test_mutually_exclusive_is_reported_first_as_ansiblemodule_does(knarr):
    result = make_action(knarr, knarr_args(labels=["a"], state="gone")).run(task_vars={})
    assert result["failed"] is True and knarr.calls == []
    assert "mutually exclusive" in result["msg"] and "nodes|labels" in result["msg"]


def test_unknown_option_fails(registry):
    result = make_action(registry, dict(registry="/x", label="a", colour="red")).run(task_vars={})
    assert result["failed"] is True and "colour" in result["msg"]
    assert result["msg"].startswith("Unsupported parameters for (fenrir.fleet.fleet_registry) module: ")
    assert registry.calls == []


def test_a_secret_echoed_in_a_validation_message_is_removed(registry):
    args = dict(registry="/x", label="a", node_db_b64=SECRET, state=SECRET)
    result = make_action(registry, args).run(task_vars={})
    assert result["failed"] is True and "state" in result["msg"]
    assert_hidden(result, SECRET)


def test_module_failure_is_a_failed_result_not_an_exception(knarr):
    knarr.failure = ModuleFailure("node 'a', field 'ip': 10.0.0.1 is outside the pool")
    result = make_action(knarr, knarr_args()).run(task_vars={})
    assert result["failed"] is True and result["msg"] == "node 'a', field 'ip': 10.0.0.1 is outside the pool"


# --------------------------------------------------------------------------- the ordinary way


@pytest.mark.parametrize("transport", ["ssh", "community.docker.docker", "ansible.builtin.paramiko_ssh"])
def test_non_local_connection_executes_the_module_the_ordinary_way(knarr, transport):
    args = knarr_args()
    action = make_action(knarr, args, transport=transport)
    result = action.run(task_vars={"inventory_hostname": "h1"})
    assert knarr.calls == []
    assert action.remote_calls == [dict(module_name="fenrir.fleet.knarr_container", module_args=args,
                                        task_vars={"inventory_hostname": "h1"})]
    assert result["remote"] is True


@pytest.mark.parametrize("transport", ["local", "ansible.builtin.local"])
def test_the_real_transport_decides(knarr, transport):
    action = make_action(knarr, knarr_args(), transport=transport)
    action.run(task_vars={})
    assert len(knarr.calls) == 1 and action.remote_calls == []


def test_become_executes_the_module_the_ordinary_way(registry):
    action = make_action(registry, dict(registry="/x", label="a"), become=True)
    action.run(task_vars={})
    assert registry.calls == [] and action.remote_calls[0]["module_name"] == "fenrir.fleet.fleet_registry"


def test_a_library_missing_from_the_controller_means_the_ordinary_way(knarr):
    knarr.REQUIREMENTS = ("docker", "no_such_library_here")
    action = make_action(knarr, knarr_args())
    action.run(task_vars={})
    assert knarr.calls == [] and action.remote_calls[0]["module_name"] == "fenrir.fleet.knarr_container"


def test_secrets_the_run_came_to_know_are_masked_and_their_key_removed(knarr):
    """A node's cockpit token is read from the registry during the run: handed over under RUNTIME_SECRETS."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import RUNTIME_SECRETS
    token = "cockpit-token-from-the-registry"
    knarr.result = {"changed": True, "msg": "token %s" % token, "nodes": [dict(label="a", x=token)],
                    RUNTIME_SECRETS: [token]}
    result = make_action(knarr, knarr_args()).run(task_vars={})
    assert_hidden(result, token)
    assert RUNTIME_SECRETS not in result and result["nodes"][0]["label"] == "a"
    knarr.result = None
    knarr.failure = ModuleFailure("failed near %s" % token, {"failed_nodes": ["a"], RUNTIME_SECRETS: [token]})
    result = make_action(knarr, knarr_args()).run(task_vars={})
    assert result["failed"] is True and RUNTIME_SECRETS not in result
    assert_hidden(result, token)
