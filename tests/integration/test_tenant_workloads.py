"""Tenant workloads against the real engine, through ansible-playbook: limits seen by Docker and by the
container's own cgroup, ports, health, failures classified, bad input refused with Docker unchanged,
idempotence, check mode, in-place updates, a recreate, a rollback, recovery after an interrupted run, destroy;
every tenant's record in the fleet registry as a second controller (a new process with only the registry) reads
it, drift between registry and engine, and one run on PostgreSQL.

Every container here carries the label ``ttest.tenant_id`` (prefix ``ttest``) or ``ttest.scratch``, and
only those are removed -- before the tests (a killed run's leftovers) and after them. Ports bind to 127.0.0.1
and are picked free at the start. The image is the repository's fenrir-tenant-http (built locally by
scripts/ensure-tenant-image; nothing is pulled).
"""
import hashlib
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
import yaml

from conftest import CLIENT, ROOT, run_playbook

PREFIX = "ttest"
IMAGE = "fenrir-tenant-http:latest"
EXITS_IMAGE = "fenrir-tenant-http:ttest-exits"  # made here, removed here: exits with code 3 at once
SECRET = "ttest-s3cret-value-never-shown"
HEALTH = {"test": ["CMD", "tenant-http", "health"], "interval": "1s", "timeout": "2s", "retries": 1}


def ours():
    """Every container this module made (tenants of the ttest prefix and scratch containers)."""
    found = {}
    for label in (PREFIX + ".tenant_id", PREFIX + ".scratch"):
        for c in CLIENT.containers.list(all=True, filters={"label": label}, ignore_removed=True):
            found[c.name] = c
    return found


def remove_ours():
    from docker.errors import NotFound
    for c in ours().values():
        try:
            c.remove(force=True)
        except NotFound:
            pass


def free_ports(n):
    socks, ports = [], []
    for dummy in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def http_get(port, path="/"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as response:
        return json.loads(response.read())


def tenant(cpu=250, memory=32, ports=(), env=None, image=IMAGE, **provider_config):
    spec = {"containers": [{"name": "app", "image": image, "env": dict(env or {}), "ports": list(ports)}],
            "resources": {"cpu": cpu, "memory": memory}}
    if provider_config:
        spec["provider_config"] = provider_config
    return spec


SECOND_CONTROLLER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[2])
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry
    with Registry(sys.argv[1], actor="second controller", check_mode=True) as reg:
        out = {}
        for t in reg.tenants():
            spec = reg.get_tenant_spec(t["tenant_id"]) or {}
            env = (spec.get("containers") or [{}])[0].get("env") or {}
            out[t["tenant_id"]] = dict(t, spec_image=(spec.get("containers") or [{}])[0].get("image"),
                                       secret_kept=env.get("API_TOKEN") == os.environ.get("TTEST_SECRET"))
        print(json.dumps(dict(tenants=out, audit_ok=reg.verify()["ok"])))
""")


def second_controller(registry, environ=None):
    """What another controller knows of the tenants: a new process with only the registry (and its key) reads every
    record (never writing), decrypts each spec and verifies the audit chain."""
    proc = subprocess.run([sys.executable, "-c", SECOND_CONTROLLER, registry, os.path.join(ROOT, "collections")],
                          env=dict(os.environ, TTEST_SECRET=SECRET, **(environ or {})), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["audit_ok"], "the registry's audit chain does not verify"
    return out["tenants"]


def registry_digest(registry):
    """The registry's content (None when there is none): equal digests mean nothing was written."""
    if not os.path.exists(registry):
        return None
    conn = sqlite3.connect(registry)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


class Tenants:
    """A temporary inventory (a host per tenant) and registry, and ways to run playbooks on it."""

    def __init__(self, path, registry=None, key_file=None):
        self.dir = str(path)
        self.registry = registry or os.path.join(self.dir, "state", "fleet.db")
        self.inventory = self.controller(self.dir, self.registry, key_file)
        self.set_hosts({})

    @staticmethod
    def controller(directory, registry, key_file=None):
        """An inventory of its own (a controller's): the registry and the play settings, no tenant yet."""
        inventory = os.path.join(directory, "inventory")
        os.makedirs(os.path.join(inventory, "group_vars"))
        settings = dict(tenants_prefix=PREFIX, tenants_registry=registry, tenants_bind_address="127.0.0.1",
                        tenants_start_settle=1.0, tenants_start_timeout=20, tenants_parallelism=4)
        if key_file:
            settings["tenants_registry_key_file"] = key_file
        with open(os.path.join(inventory, "group_vars", "all.yml"), "w") as fh:
            yaml.safe_dump(settings, fh)
        with open(os.path.join(inventory, "hosts.yml"), "w") as fh:
            yaml.safe_dump({"all": {"hosts": {"localhost": {
                "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}, fh)
        return inventory

    def set_hosts(self, hosts):
        """hosts: {tenant host: {variable: value}}, the tenants group."""
        inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                     "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
                             "children": {"tenants": {"vars": {"ansible_connection": "local",
                                                               "ansible_python_interpreter":
                                                               "{{ ansible_playbook_python }}"},
                                                      "hosts": hosts}}}}
        with open(os.path.join(self.inventory, "hosts.yml"), "w") as fh:
            yaml.safe_dump(inventory, fh)

    def play(self, playbook="tenants.yml", *args, check=True):
        result = run_playbook(self.inventory, playbook, *args, check=False)
        assert SECRET not in result.stdout + result.stderr, "a secret env value was shown"
        if check and result.rc != 0:
            raise AssertionError("%s failed (rc %d):\n%s\n%s" % (playbook, result.rc, result.errors(),
                                                                 result.stderr[-3000:]))
        return result


def rows(result):
    """tenant_id -> the tenant's row (tenants_results of the role)."""
    facts = (result.task_result("Every tenant's result") or {}).get("ansible_facts") or {}
    return {r["tenant_id"]: r for r in facts.get("tenants_results") or []}


def task_named(result, name):
    """The (first host's) result of the task called exactly ``name``."""
    for task, hosts in result.tasks():
        if task == name or task.endswith(" : " + name):
            return next(iter(hosts.values()))
    return None


def module_results(result):
    res = result.task_result("Tenants on each Docker engine") or {}
    return res.get("results", [res])


def docker_state():
    """What Docker shows of our containers: equal states mean nothing changed."""
    out = {}
    for name, c in ours().items():
        c.reload()
        out[name] = (c.id, c.status, c.attrs["State"]["StartedAt"], c.attrs["HostConfig"]["Memory"],
                     c.attrs["HostConfig"]["NanoCpus"])
    return out


def fleet_status(env):
    """playbooks/status.yml on the tenants' registry: (result, its output lines split in words)."""
    result = run_playbook(env.inventory, "status.yml", "-e", "knarr_node_registry=%s" % env.registry)
    shown = task_named(result, "Show the fleet")["msg"]
    return result, [line.split() for line in shown]


def cgroup(name, path):
    return CLIENT.containers.get(name).exec_run(["cat", path]).output.decode().strip()


@pytest.fixture(scope="module")
def images():
    subprocess.run([os.path.join(ROOT, "scripts", "ensure-tenant-image")], check=True, capture_output=True)
    dockerfile = "FROM %s\nENV TENANT_EXIT_CODE=3\n" % IMAGE
    CLIENT.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=EXITS_IMAGE, pull=False, rm=True,
                        labels={PREFIX + ".scratch": "1"})
    yield
    remove_ours()
    CLIENT.images.remove(EXITS_IMAGE, noprune=False)


@pytest.fixture
def env(tmp_path, images):
    remove_ours()
    yield Tenants(tmp_path)
    remove_ours()


# --------------------------------------------------------------------------- provision, limits, idempotence, updates

def test_limits_ports_health_idempotence_check_mode_and_update_in_place(env):
    port = free_ports(1)[0]
    env.set_hosts({
        "alpha": {"tenants_spec": tenant(cpu=500, memory=64, env={"API_TOKEN": SECRET, "TENANT_NAME": "alpha"},
                                         ports=[{"container_port": 8080, "host_port": port, "name": "http"},
                                                {"container_port": 9090, "host_port": 0, "name": "metrics"}],
                                         health_check=HEALTH)},
        "beta": {"tenants_spec": tenant()},
    })
    first = env.play()
    got = rows(first)
    assert (got["alpha"]["status"], got["alpha"]["health"]) == ("running", "healthy")
    assert (got["beta"]["status"], got["beta"]["health"]) == ("running", "none")
    assert first.changed() >= 1

    alpha = CLIENT.containers.get("ttest-tenant-alpha")
    host = alpha.attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert host["Memory"] == host["MemorySwap"] == 64 * 1024 * 1024
    assert cgroup(alpha.name, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us") == "50000"
    assert cgroup(alpha.name, "/sys/fs/cgroup/cpu/cpu.cfs_period_us") == "100000"
    assert cgroup(alpha.name, "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(64 * 1024 * 1024)
    assert http_get(port)["tenant"] == "alpha"
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert alpha.attrs["NetworkSettings"]["Ports"]["9090/tcp"] is None  # host_port 0: no mapping at all
    beta_ports = CLIENT.containers.get("ttest-tenant-beta").attrs["NetworkSettings"]["Ports"] or {}
    assert all(binding is None for binding in beta_ports.values())  # exposed by the image, published nowhere
    labels = alpha.labels
    assert (labels["ttest.tenant_id"], labels["ttest.owner"], labels["ttest.provider"]) == (
        "alpha", "fenrir.fleet", "docker")
    assert labels["fenrir.fleet.registry"] == env.registry
    assert SECRET not in json.dumps(labels)
    known = second_controller(env.registry)
    assert {t: (r["status"], r["image"], r["container_name"]) for t, r in known.items()} == {
        "alpha": ("running", IMAGE, "ttest-tenant-alpha"), "beta": ("running", IMAGE, "ttest-tenant-beta")}
    assert known["alpha"]["container_id"] == alpha.id and known["alpha"]["image_id"] == alpha.image.id
    assert known["alpha"]["secret_kept"] and known["alpha"]["spec_image"] == IMAGE  # the spec, encrypted there

    second = env.play()
    assert second.changed() == 0 and rows(second)["alpha"]["actions"] == []

    # Check mode with diff: planned and shown, nothing changed.
    before, recorded = docker_state(), registry_digest(env.registry)
    hosts = yaml.safe_load(open(os.path.join(env.inventory, "hosts.yml")))["all"]["children"]["tenants"]["hosts"]
    hosts["alpha"]["tenants_spec"]["resources"]["memory"] = 96
    env.set_hosts(hosts)
    planned = env.play("tenants.yml", "--check", "--diff")
    assert docker_state() == before and registry_digest(env.registry) == recorded
    module = module_results(planned)[0]
    assert module["changed"] and module["diff"]["before"]["alpha"]["memory"] == 64
    assert module["diff"]["after"]["alpha"]["memory"] == 96
    assert module["diff"]["after"]["alpha"]["env"]["API_TOKEN"] == "********"
    assert [t["actions"] for t in module["tenants"]] == [
        ["update in place (memory 64 -> 96, memory_swap 64 -> 96)"], []]

    # Now for real: the same container, a new limit, in its cgroup too.
    applied = env.play()
    assert rows(applied)["alpha"]["actions"] == ["update in place (memory 64 -> 96, memory_swap 64 -> 96)"]
    assert CLIENT.containers.get("ttest-tenant-alpha").id == alpha.id
    assert cgroup(alpha.name, "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(96 * 1024 * 1024)
    assert env.play().changed() == 0


# --------------------------------------------------------------------------- failures classified

def test_oom_exit_and_unhealthy_are_reported(env):
    env.set_hosts({
        "sick": {"tenants_spec": tenant(env={"TENANT_HEALTHY_FOR": "4"}, health_check=HEALTH)},
        "oom": {"tenants_spec": tenant(memory=24, env={"TENANT_OOM": "1"}, restart_policy="no")},
        "crash": {"tenants_spec": tenant(env={"TENANT_EXIT_CODE": "3"}, restart_policy="no")},
    })
    # Without a health check a tenant counts as started when it still runs after tenants_start_settle seconds: on a
    # busy machine (2 shared cores) the image's Python may need more than the other tests' 1 s to exit or fill its
    # memory limit, so this play gives them 5.
    result = env.play("tenants.yml", "-e", "tenants_start_settle=5", check=False)
    assert result.rc != 0, result.stdout[-4000:]
    got = rows(result)
    assert (got["sick"]["status"], got["sick"]["health"]) == ("running", "healthy")
    assert (got["oom"]["status"], got["oom"]["exit_code"]) == ("failed", 137)
    assert "memory limit of 24 MB" in got["oom"]["reason"]  # OOMKilled, or SIGKILL when the engine cannot tell
    assert (got["crash"]["status"], got["crash"]["exit_code"]) == ("failed", 3)
    assert "exited with code 3" in got["crash"]["reason"]
    failure = result.task_result("No tenant failed")["msg"]
    assert "tenant 'oom'" in failure and "tenant 'crash'" in failure and "tenant 'sick'" not in failure
    assert sorted(ours()) == ["ttest-tenant-crash", "ttest-tenant-oom", "ttest-tenant-sick"]  # kept, for their logs
    known = second_controller(env.registry)
    assert {t: (r["status"], r["exit_code"]) for t, r in known.items()} == {
        "crash": ("failed", 3), "oom": ("failed", 137), "sick": ("running", None)}
    assert "exited with code 3" in known["crash"]["reason"] and "memory limit" in known["oom"]["reason"]

    deadline = time.monotonic() + 30
    while CLIENT.api.inspect_container("ttest-tenant-sick")["State"]["Health"]["Status"] != "unhealthy":
        assert time.monotonic() < deadline, "never became unhealthy"
        time.sleep(0.5)
    status = rows(env.play("tenants.yml", "-e", "tenants_mode=status"))
    assert (status["sick"]["status"], status["sick"]["health"]) == ("running", "unhealthy")
    assert "health check failing" in status["sick"]["reason"]
    assert (status["oom"]["status"], status["oom"]["exit_code"]) == ("failed", 137)
    assert (status["crash"]["status"], status["crash"]["exit_code"]) == ("failed", 3)

    # Drift, seen by a second controller that has only the registry (no tenant in its inventory): a container
    # removed behind the registry's back, one made for this registry without a record.
    CLIENT.containers.get("ttest-tenant-crash").remove(force=True)
    CLIENT.containers.create(IMAGE, name="ttest-tenant-stray", labels={
        PREFIX + ".tenant_id": "stray", "fenrir.fleet.role": "tenant", "fenrir.fleet.registry": env.registry})
    other = Tenants.controller(os.path.join(env.dir, "second"), env.registry)
    as_json = run_playbook(other, "tenants.yml", "-e", "tenants_mode=status", "-e", "tenants_output=json")
    printed = {r["tenant_id"]: r for r in json.loads(task_named(as_json, "Tenants")["msg"])}
    assert {t: (r["status"], r["registry_status"], r["drift"]) for t, r in printed.items()} == {
        "crash": ("failed", "failed", ["container missing"]), "oom": ("failed", "failed", []),
        "sick": ("running", "running", []), "stray": ("stopped", None, ["not in registry"])}
    # The fleet status playbook shows them beside the nodes.
    dummy, lines = fleet_status(env)
    assert ["crash", "failed", "failed", "container", "missing"] in lines
    assert ["stray", "-", "stopped", "not", "in", "registry"] in lines and ["sick", "running", "running", "in", "sync"] in lines


# --------------------------------------------------------------------------- refusals

def test_bad_input_is_refused_and_docker_unchanged(env):
    blocked, free = free_ports(2)
    CLIENT.containers.run(IMAGE, name="ttest-scratch-blocker", detach=True, labels={PREFIX + ".scratch": "1"},
                          ports={"8080/tcp": ("127.0.0.1", blocked)})
    CLIENT.containers.create(IMAGE, name="ttest-tenant-foreign", labels={
        PREFIX + ".tenant_id": "foreign", "fenrir.fleet.role": "tenant", "fenrir.fleet.registry": "/elsewhere/fleet.db"})
    CLIENT.containers.create(IMAGE, name="ttest-tenant-otherprefix", labels={
        PREFIX + ".scratch": "1", "fenrir.tenant_id": "otherprefix"})
    good = tenant()
    web = [{"container_port": 8080, "host_port": free}]
    cases = {
        "two containers": ("bad-a", dict(good, containers=good["containers"] * 2), "containers",
                           "exactly one container per tenant"),
        "unknown provider": ("bad-b", dict(good, provider_type="kubernetes"), "provider_type", "kubernetes"),
        "unsafe tenant id": ("Bad_Id", good, "tenant_id", "a-z, 0-9"),
        "missing image": ("bad-c", tenant(image="fenrir-no-such-image:1"), "containers[0].image", "ever pulled"),
        "port out of range": ("bad-d", tenant(ports=[{"container_port": 70000}]), "containers[0].ports[0].container_port",
                              "1-65535"),
        "port twice": ("bad-e", tenant(ports=web + [{"container_port": 8081, "host_port": free}]),
                       "containers[0].ports[1].host_port", "also published by ports[0]"),
        "port of any container": ("bad-f", tenant(ports=[{"container_port": 8080, "host_port": blocked}]),
                                  "containers[0].ports[0].host_port", "already published by container "
                                  "ttest-scratch-blocker"),
        "restart policy": ("bad-g", tenant(restart_policy="sometimes"), "provider_config.restart_policy",
                           "not a restart policy"),
        "log options shape": ("bad-h", tenant(log_driver="json-file", log_options=["max-size=1m"]),
                              "provider_config.log_options", "mapping"),
        "unknown log driver": ("bad-i", tenant(log_driver="nosuchdriver"), "provider_config.log_driver",
                               "not a log driver of the Docker engine"),
        "bad health check": ("bad-j", tenant(health_check={"test": ["CMD", "true"], "interval": "soon"}),
                             "provider_config.health_check.interval", "duration"),
        "cpu beyond the host": ("bad-k", tenant(cpu=64000), "resources.cpu", "CPU(s) of the Docker engine"),
        "memory below 6 MB": ("bad-l", tenant(memory=4), "resources.memory", "6 MB"),
        "another registry's container": ("foreign", good, "tenant_id", "belongs to the fleet registry /elsewhere"),
        "another prefix's container": ("otherprefix", good, "tenant_id", "under prefix 'fenrir'"),
    }
    tasks = []
    for name, (tid, spec, _field, _words) in sorted(cases.items()):
        tasks.append({"name": "case " + name, "ignore_errors": True, "fenrir.fleet.tenant": {
            "prefix": PREFIX, "registry": env.registry, "bind_address": "127.0.0.1",
            "tenants": [dict(spec, tenant_id=tid)]}})
    tasks.append({"name": "case two tenants one port", "ignore_errors": True, "fenrir.fleet.tenant": {
        "prefix": PREFIX, "registry": env.registry, "bind_address": "127.0.0.1",
        "tenants": [dict(tenant(ports=web), tenant_id="bad-m"), dict(tenant(ports=web), tenant_id="bad-n")]}})
    playbook = os.path.join(env.dir, "bad.yml")
    with open(playbook, "w") as fh:
        yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], fh)

    before = docker_state()
    result = env.play(playbook, check=False)
    for name, (tid, _spec, field, words) in cases.items():
        res = result.task_result("case " + name)
        assert res and res.get("failed"), name
        assert "tenant %r, field %r" % (tid, field) in res["msg"] and words in res["msg"], (name, res["msg"])
        assert res["msg"].startswith("refused, nothing changed")
    both = result.task_result("case two tenants one port")["msg"]
    assert "tenant 'bad-n'" in both and "also published by tenant 'bad-m'" in both
    assert docker_state() == before

    assert second_controller(env.registry) == {}  # refused: no record either

    # Through the role: stopped in its preflight, naming the host.
    env.set_hosts({"fine": {"tenants_spec": good}, "broken": {"tenants_spec": tenant(memory=4)}})
    result = env.play(check=False)
    assert result.rc != 0 and "tenant 'broken', field 'resources.memory'" in result.errors()
    assert "host broken" in result.errors()
    assert docker_state() == before


# --------------------------------------------------------------------------- recreate, rollback, recovery, destroy

def test_recreate_rollback_interrupted_run_and_destroy(env):
    port = free_ports(1)[0]
    vars_file = os.path.join(env.dir, "tenants.yml")

    def play_list(name, image=IMAGE, state="present", *args, check=True):
        spec = tenant(ports=[{"container_port": 8080, "host_port": port}], env={"TENANT_NAME": name}, image=image,
                      health_check=HEALTH)
        with open(vars_file, "w") as fh:
            yaml.safe_dump({"tenants_list": [dict(spec, tenant_id="gamma")], "tenants_state": state}, fh)
        return env.play("tenants.yml", "-e", "@" + vars_file, *args, check=check)

    play_list("gamma-1")
    first = CLIENT.containers.get("ttest-tenant-gamma").id
    assert http_get(port)["tenant"] == "gamma-1"

    recreated = rows(play_list("gamma-2"))["gamma"]
    assert recreated["actions"][0] == "recreate (env)" and recreated["actions"][-1] == "remove the previous container"
    second = CLIENT.containers.get("ttest-tenant-gamma").id
    assert second != first and http_get(port)["tenant"] == "gamma-2"
    assert sorted(ours()) == ["ttest-tenant-gamma"]

    # A new image that exits at once: the previous container comes back under its name, the run fails.
    failed = play_list("gamma-2", image=EXITS_IMAGE, check=False)
    assert failed.rc != 0
    message = failed.task_result("No tenant failed")["msg"]
    assert "tenant 'gamma'" in message and "update rolled back" in message and "exited with code 3" in message
    assert rows(failed)["gamma"]["rolled_back"] is True
    assert CLIENT.containers.get("ttest-tenant-gamma").id == second and http_get(port)["tenant"] == "gamma-2"
    assert sorted(ours()) == ["ttest-tenant-gamma"]
    gamma = second_controller(env.registry)["gamma"]  # the previous spec is in force, and the registry says why
    assert (gamma["status"], gamma["image"], gamma["container_id"]) == ("running", IMAGE, second)
    assert "update rolled back" in gamma["reason"] and "exited with code 3" in gamma["reason"]
    # The spec in force again: nothing to do in Docker; the registry learns the failure is over.
    after = rows(play_list("gamma-2"))["gamma"]
    assert after["actions"] == [] and after["record"]["reason"] is None

    # A run killed mid-recreate left the previous container aside and none under the name: it is restored.
    CLIENT.api.rename(second, "ttest-tenant-gamma.previous")
    restored = rows(play_list("gamma-2"))["gamma"]
    assert restored["actions"] == ["restore ttest-tenant-gamma.previous as ttest-tenant-gamma"]
    assert CLIENT.containers.get("ttest-tenant-gamma").id == second and sorted(ours()) == ["ttest-tenant-gamma"]

    gone = rows(play_list("gamma-2", state="absent"))["gamma"]
    assert (gone["status"], gone["removed"], gone["destroyed"]) == ("destroyed", ["ttest-tenant-gamma"], True)
    assert gone["record"]["status"] == "destroyed"
    assert ours() == {}
    gamma = second_controller(env.registry)["gamma"]
    assert (gamma["status"], gamma["container_id"]) == ("destroyed", None) and "state=absent" in gamma["reason"]
    again = play_list("gamma-2", state="absent")
    assert again.changed() == 0 and rows(again)["gamma"]["status"] == "absent"


def test_check_mode_creates_nothing(env):
    env.set_hosts({"delta": {"tenants_spec": tenant()}})
    planned = env.play("tenants.yml", "--check", "--diff")
    module = module_results(planned)[0]
    assert module["changed"] and module["tenants"][0]["actions"] == ["create", "start"]
    assert module["diff"]["before"] == {"delta": None} and module["diff"]["after"]["delta"]["cpu"] == 250
    assert module["tenants"][0]["record"]["status"] == "running"  # planned on the registry's private copy
    assert ours() == {} and not os.path.exists(env.registry)


# --------------------------------------------------------------------------- PostgreSQL

@pytest.fixture
def pg_registry(tmp_path, pg_location):
    """A PostgreSQL registry of this test (a schema of its own in the run's database, tests/conftest.py); its key
    in a file of the test's."""
    return pg_location, str(tmp_path / "fleet.key")


def test_tenants_on_a_postgresql_registry(tmp_path, images, pg_registry):
    remove_ours()
    dsn, key_file = pg_registry
    env = Tenants(tmp_path, registry=dsn, key_file=key_file)
    env.set_hosts({"pg-one": {"tenants_spec": tenant(env={"API_TOKEN": SECRET})}})
    try:
        made = env.play()
        assert rows(made)["pg-one"]["status"] == "running" and rows(made)["pg-one"]["record"]["status"] == "running"
        container = CLIENT.containers.get("ttest-tenant-pg-one")
        assert container.labels["fenrir.fleet.registry"].startswith("postgresql://")
        known = second_controller(dsn, {"FENRIR_REGISTRY_KEY_FILE": key_file})
        assert (known["pg-one"]["status"], known["pg-one"]["container_id"]) == ("running", container.id)
        assert known["pg-one"]["secret_kept"]
        env.play("tenants.yml", "-e", "tenants_state=absent")
        assert ours() == {}
        known = second_controller(dsn, {"FENRIR_REGISTRY_KEY_FILE": key_file})
        assert known["pg-one"]["status"] == "destroyed"
    finally:
        remove_ours()
