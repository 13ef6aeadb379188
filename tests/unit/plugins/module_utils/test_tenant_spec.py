"""tenant_spec.py: the seed's tenant spec validated (refusals name the tenant and the field), Docker's units,
what forces a new container, and what output may show."""

import copy

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import tenant_spec as ts
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError

GOOD = {
    "tenant_id": "acme-corp",
    "provider_type": "docker",
    "containers": [{
        "name": "app",
        "image": "myapp:1.0",
        "command": ["./start.sh"],
        "args": ["--config=/etc/app/config.yaml"],
        "env": {"LOG_LEVEL": "debug", "DATABASE_URL": "postgres://app:hunter2@db:5432/acme", "API_TOKEN": "t0k3n"},
        "ports": [{"container_port": 8080, "host_port": 8080, "protocol": "tcp", "name": "http"},
                  {"container_port": 9090, "host_port": 0, "name": "metrics"}],
    }],
    "resources": {"cpu": 500, "memory": 256},
    "provider_config": {"restart_policy": "unless-stopped", "log_driver": "json-file",
                        "log_options": {"max-size": "10m", "max-file": 3},
                        "health_check": {"test": ["CMD", "tenant-http", "health"], "interval": "5s", "timeout": 2,
                                         "retries": 3, "start_period": "1m30s"}},
}


def spec(**changes):
    """GOOD with dotted-path changes: spec(**{"resources.cpu": 250}); a value of DELETE removes the key."""
    out = copy.deepcopy(GOOD)
    for path, value in changes.items():
        node = out
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        last = keys[-1]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return out


DELETE = object()


# --------------------------------------------------------------------------- units

def test_millicores_become_nanocpus_and_megabytes_bytes_with_swap_equal():
    s = ts.normalize_tenant(GOOD)
    assert ts.nano_cpus(s) == 500_000_000  # 0.5 CPU: a CFS quota of 50000 per 100000
    assert ts.memory_bytes(s) == 256 * 1024 * 1024
    assert ts.nano_cpus(ts.normalize_tenant(spec(**{"resources.cpu": 1000}))) == 10 ** 9
    assert ts.nano_cpus(ts.normalize_tenant(spec(**{"resources.cpu": "2000"}))) == 2 * 10 ** 9


def test_defaults_are_the_seeds():
    s = ts.normalize_tenant({"tenant_id": "web-app", "containers": [{"name": "web", "image": "nginx:alpine",
                                                                     "ports": [{"container_port": 80}]}],
                             "resources": {"cpu": 500, "memory": 256}})
    assert s["provider_type"] == "docker"
    assert s["provider_config"] == dict(restart_policy="unless-stopped", log_driver=None, log_options={},
                                        health_check=None)
    assert s["containers"][0]["ports"] == [dict(container_port=80, host_port=0, protocol="tcp", name=None)]
    assert s["containers"][0]["env"] == {} and s["containers"][0]["command"] is None


def test_host_port_zero_is_exposed_but_never_published():
    s = ts.normalize_tenant(GOOD)
    exposed, bindings = ts.port_bindings(s, "127.0.0.1")
    assert exposed == [(8080, "tcp"), (9090, "tcp")]
    assert bindings == {"8080/tcp": [("127.0.0.1", 8080)]}


def test_command_is_followed_by_args_and_absent_keeps_the_images():
    assert ts.docker_command(ts.normalize_tenant(GOOD)) == ["./start.sh", "--config=/etc/app/config.yaml"]
    assert ts.docker_command(ts.normalize_tenant(spec(**{"containers.0.command": DELETE}))) == [
        "--config=/etc/app/config.yaml"]
    assert ts.docker_command(ts.normalize_tenant(spec(**{"containers.0.command": DELETE,
                                                         "containers.0.args": DELETE}))) is None
    assert ts.normalize_tenant(spec(**{"containers.0.args": ["--port", 8080]}))["containers"][0]["args"] == [
        "--port", "8080"]


def test_health_check_in_dockers_form():
    s = ts.normalize_tenant(GOOD)
    assert ts.healthcheck_api(s["provider_config"]["health_check"]) == {
        "Test": ["CMD", "tenant-http", "health"], "Interval": 5 * 10 ** 9, "Timeout": 2 * 10 ** 9,
        "StartPeriod": 90 * 10 ** 9, "Retries": 3}
    shell = ts.normalize_tenant(spec(**{"provider_config.health_check": {"test": "curl -f localhost"}}))
    assert ts.healthcheck_api(shell["provider_config"]["health_check"]) == {"Test": ["CMD-SHELL", "curl -f localhost"]}
    bare = ts.normalize_tenant(spec(**{"provider_config.health_check": {"test": ["prog", "arg"]}}))
    assert bare["provider_config"]["health_check"]["test"] == ["CMD", "prog", "arg"]
    assert ts.healthcheck_api(None) is None


@pytest.mark.parametrize("text, seconds", [(5, 5.0), ("5", 5.0), ("500ms", 0.5), ("1m30s", 90.0), ("2h", 7200.0),
                                           ("1.5s", 1.5), ("soon", None), ("5 s", None), ("", None), (True, None)])
def test_durations(text, seconds):
    assert ts.parse_duration(text) == seconds


def test_restart_policy_both_ways():
    assert ts.restart_policy_api("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert ts.restart_policy_api("unless-stopped") == {"Name": "unless-stopped", "MaximumRetryCount": 0}
    assert ts.restart_policy_text({"Name": "on-failure", "MaximumRetryCount": 3}) == "on-failure:3"
    assert ts.restart_policy_text({"Name": ""}) == "no"
    assert ts.normalize_tenant(spec(**{"provider_config.restart_policy": False}))["provider_config"][
        "restart_policy"] == "no"  # YAML 1.1's bare no


def test_log_options_become_strings():
    s = ts.normalize_tenant(GOOD)
    assert s["provider_config"]["log_options"] == {"max-size": "10m", "max-file": "3"}


# --------------------------------------------------------------------------- refusals

REFUSED = {
    "two containers": ({"containers": [GOOD["containers"][0], dict(GOOD["containers"][0], name="sidecar")]},
                       "containers", "exactly one container per tenant"),
    "no container": ({"containers": []}, "containers", "exactly one"),
    "unknown provider": ({"provider_type": "kubernetes"}, "provider_type", "'kubernetes'"),
    "tenant id with capitals": ({"tenant_id": "Acme_Corp"}, "tenant_id", "a-z, 0-9"),
    "tenant id too long for the name": ({"tenant_id": "a" * 50}, "tenant_id", "1-49 characters"),
    "tenant id missing": ({"tenant_id": DELETE}, "tenant_id", "a-z"),
    "unknown key": ({"replicas": 3}, "spec", "replicas"),
    "unknown container key": ({"containers.0.volumes": ["/x"]}, "containers[0]", "volumes"),
    "no image": ({"containers.0.image": DELETE}, "containers[0].image", "non-empty"),
    "image with a space": ({"containers.0.image": "my app"}, "containers[0].image", "white space"),
    "command not a list": ({"containers.0.command": "./start.sh"}, "containers[0].command", "list of strings"),
    "env not a mapping": ({"containers.0.env": ["A=1"]}, "containers[0].env", "mapping"),
    "env boolean": ({"containers.0.env.DEBUG": True}, "containers[0].env.DEBUG", "quote it"),
    "env bad name": ({"containers.0.env": {"1BAD": "x"}}, "containers[0].env", "environment variable name"),
    "container port 0": ({"containers.0.ports.0.container_port": 0}, "containers[0].ports[0].container_port", "1-65535"),
    "container port too big": ({"containers.0.ports.0.container_port": 70000}, "containers[0].ports[0].container_port",
                               "1-65535"),
    "host port negative": ({"containers.0.ports.0.host_port": -1}, "containers[0].ports[0].host_port", "0-65535"),
    "port not a number": ({"containers.0.ports.0.host_port": "http"}, "containers[0].ports[0].host_port", "integer"),
    "container port twice": ({"containers.0.ports.1.container_port": 8080}, "containers[0].ports[1].container_port",
                             "also ports[0]"),
    "host port twice": ({"containers.0.ports.1.host_port": 8080}, "containers[0].ports[1].host_port",
                        "also published by ports[0]"),
    "port name twice": ({"containers.0.ports.1.name": "http"}, "containers[0].ports[1].name", "also the name"),
    "unknown protocol": ({"containers.0.ports.0.protocol": "icmp"}, "containers[0].ports[0].protocol", "tcp, udp"),
    "cpu as CPUs": ({"resources.cpu": 0.5}, "resources.cpu", "write 500"),
    "cpu below Docker's floor": ({"resources.cpu": 5}, "resources.cpu", "10-"),
    "cpu missing": ({"resources.cpu": DELETE}, "resources.cpu", "required"),
    "resources missing": ({"resources": DELETE}, "resources", "mapping"),
    "memory below 6 MB": ({"resources.memory": 4}, "resources.memory", "minimum is 6 MB"),
    "memory as a size": ({"resources.memory": "256m"}, "resources.memory", "integer"),
    "unknown restart policy": ({"provider_config.restart_policy": "sometimes"}, "provider_config.restart_policy",
                               "not a restart policy"),
    "restart count on always": ({"provider_config.restart_policy": "always:3"}, "provider_config.restart_policy",
                                "on-failure:N"),
    "log options a list": ({"provider_config.log_options": ["max-size=10m"]}, "provider_config.log_options",
                           "mapping of option"),
    "log option nested": ({"provider_config.log_options": {"max-size": {"a": 1}}},
                          "provider_config.log_options.max-size", "string"),
    "log options without a driver": ({"provider_config.log_driver": DELETE}, "provider_config.log_options",
                                     "without provider_config.log_driver"),
    "health test a number": ({"provider_config.health_check": {"test": 5}}, "provider_config.health_check.test",
                             "must be a command"),
    "health interval words": ({"provider_config.health_check.interval": "soon"},
                              "provider_config.health_check.interval", "duration"),
    "health retries negative": ({"provider_config.health_check.retries": -1}, "provider_config.health_check.retries",
                                "1-1000"),
    "health unknown key": ({"provider_config.health_check.every": "5s"}, "provider_config.health_check", "every"),
    "health NONE with interval": ({"provider_config.health_check": {"test": ["NONE"], "interval": 5}},
                                  "provider_config.health_check", "turns the health check off"),
    "health CMD alone": ({"provider_config.health_check": {"test": ["CMD"]}}, "provider_config.health_check.test",
                         "needs the command"),
    "unknown provider_config key": ({"provider_config.network": "host"}, "provider_config", "network"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_input_is_refused_naming_tenant_and_field(case):
    changes, field, words = REFUSED[case]
    with pytest.raises(SpecError) as err:
        ts.normalize_tenant(spec(**changes))
    assert err.value.field == field, str(err.value)
    assert words in err.value.message, str(err.value)
    assert err.value.kind == "tenant"
    if field != "tenant_id":
        assert err.value.label == "acme-corp" and str(err.value).startswith("tenant 'acme-corp', field %r" % field)


def test_the_tenant_id_limit_follows_the_prefix():
    assert ts.normalize_tenant(spec(tenant_id="a" * 49))["tenant_id"] == "a" * 49  # fenrir-tenant- + 49 = 63
    assert ts.normalize_tenant(spec(tenant_id="a" * 54), prefix="x")["tenant_id"] == "a" * 54
    with pytest.raises(SpecError, match="1-54 characters"):
        ts.normalize_tenant(spec(tenant_id="a" * 55), prefix="x")
    with pytest.raises(SpecError) as err:
        ts.normalize_tenant(GOOD, prefix="Bad.Prefix")
    assert err.value.field == "prefix"


def test_a_spec_that_is_not_a_mapping():
    with pytest.raises(SpecError, match="seed's shape"):
        ts.normalize_tenant("acme-corp")


def test_many_tenants_unique_ids_and_host_ports():
    other = spec(tenant_id="other")
    other["containers"][0]["ports"] = [{"container_port": 80, "host_port": 8080}]
    with pytest.raises(SpecError) as err:
        ts.normalize_tenants([GOOD, other])
    assert err.value.label == "other" and "also published by tenant 'acme-corp'" in err.value.message
    udp = copy.deepcopy(other)
    udp["containers"][0]["ports"][0]["protocol"] = "udp"
    assert [s["tenant_id"] for s in ts.normalize_tenants([GOOD, udp])] == ["acme-corp", "other"]
    with pytest.raises(SpecError, match="given twice"):
        ts.normalize_tenants([GOOD, GOOD])
    problems = []
    good = ts.normalize_tenants([GOOD, spec(**{"resources.memory": 1}), other], problems=problems)
    assert [s["tenant_id"] for s in good] == ["acme-corp"]
    assert [(p.label, p.field) for p in problems] == [("acme-corp", "resources.memory"),
                                                      ("other", "containers[0].ports[0].host_port")]


# --------------------------------------------------------------------------- change detection and output

def test_the_digest_covers_what_needs_a_new_container_and_nothing_else():
    base = ts.spec_digest(ts.normalize_tenant(GOOD), "0.0.0.0")
    for changes in ({"resources.cpu": 1000}, {"resources.memory": 512},
                    {"provider_config.restart_policy": "always"}):
        assert ts.spec_digest(ts.normalize_tenant(spec(**changes)), "0.0.0.0") == base, changes
    for changes in ({"containers.0.image": "myapp:1.1"}, {"containers.0.env.LOG_LEVEL": "info"},
                    {"containers.0.env.API_TOKEN": "other"}, {"containers.0.ports.1.host_port": 9091},
                    {"provider_config.log_options": {}}, {"provider_config.health_check.retries": 4}):
        assert ts.spec_digest(ts.normalize_tenant(spec(**changes)), "0.0.0.0") != base, changes
    assert ts.spec_digest(ts.normalize_tenant(GOOD), "127.0.0.1") != base
    # Spelled differently, the same spec: the same digest.
    same = spec(**{"containers.0.ports.1.host_port": DELETE, "provider_config.health_check.interval": 5})
    assert ts.spec_digest(ts.normalize_tenant(same), "0.0.0.0") == base


def test_secrets_are_masked_and_collected():
    s = ts.normalize_tenant(GOOD)
    public = ts.public_spec(s)
    env = public["containers"][0]["env"]
    assert env == {"API_TOKEN": ts.MASK, "DATABASE_URL": "postgres://app:%s@db:5432/acme" % ts.MASK,
                   "LOG_LEVEL": "debug"}
    assert s["containers"][0]["env"]["API_TOKEN"] == "t0k3n"  # the spec itself is untouched
    assert ts.secret_values([GOOD]) == {"t0k3n", "hunter2"}
    for key in ("DB_PASSWORD", "aws_secret_access_key", "GITHUB_TOKEN", "SSH_KEY", "AUTH_HEADER", "passwd"):
        assert ts.mask_value(key, "x") == ts.MASK, key
    assert ts.mask_value("LOG_LEVEL", "debug") == "debug"
    assert ts.secret_values(["not a spec", {"containers": "nope"}]) == set()
