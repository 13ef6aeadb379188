"""The collection as AWX runs it: built and installed from its tarball, jobs run by ansible-runner 2.4 in a private
data directory laid out as AWX lays it out (tests/awx_emulation.py), the registry on PostgreSQL given by the
"fenrir.fleet registry" credential type (awx/credential_types), the example project (awx/project) as the project.

* the provision job template: provision (-v, --diff: knarr.toml shown, masked), re-run with nothing to change
  (-vvv, --diff), the registry inventory source, decommission (-vvv, --diff);
* the workflow prepare-payload -> setup-docker -> wait-for-boot -> register-fleet, each stage's set_stats artifacts
  read from its playbook_on_stats event and merged into the next stage's extra vars as AWX merges them;
* no node seed, registry key, database password, cockpit token or TLS key in any file ansible-runner wrote.

Network fenrir-awxtest (172.28.0.0/24), labels awx-*; a PostgreSQL database of its own (scripts/ensure-postgres).
"""
import base64
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import CLIENT, ROOT, VENV_BIN, remove_leftovers

import awx_emulation as awx

NETWORK = "fenrir-awxtest"
PREFIX = "awx-"
AWX_DIR = os.path.join(ROOT, "awx")
GIVEN_SEED = os.urandom(32)


def _node_db_b64(seed):
    from ansible_collections.fenrir.fleet.plugins.module_utils import identity
    return base64.b64encode(identity.build_node_db(seed)).decode()


GIVEN_DB = _node_db_b64(GIVEN_SEED)


def _load(*parts):
    with open(os.path.join(AWX_DIR, *parts)) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def pg_dsn(pg_cluster):
    """A database of its own on the private cluster (tests/conftest.py), dropped afterwards: its DSN and the
    password (what an AWX credential would hold)."""
    import psycopg
    name = "fenrir_awx_%d" % os.getpid()
    with open(os.environ["PGPASSFILE"]) as fh:
        password = fh.read().strip().rsplit(":", 1)[1]
    with psycopg.connect(pg_cluster, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS %s" % name)
        conn.execute("CREATE DATABASE %s" % name)
    yield pg_cluster.rsplit("/", 1)[0] + "/" + name, password
    with psycopg.connect(pg_cluster, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)


@pytest.fixture(scope="module")
def awx_site(tmp_path_factory, pg_dsn):
    """What AWX would have: the collection installed from its tarball (a project update's
    requirements_collections), the project, the credential types, one registry credential."""
    from cryptography.fernet import Fernet
    base = tmp_path_factory.mktemp("awx")
    tarball = awx.build_collection(ROOT, str(base), os.path.join(VENV_BIN, "ansible-galaxy"))
    collections = str(base / "requirements_collections")
    awx.install_collection(tarball, collections, os.path.join(VENV_BIN, "ansible-galaxy"))
    dsn, password = pg_dsn
    key = Fernet.generate_key().decode()
    registry_cred = (_load("credential_types", "fenrir_fleet_registry.json"),
                     dict(dsn=dsn, password=password, registry_key=key))
    home = base / "home"
    home.mkdir()
    remove_leftovers(PREFIX, NETWORK)
    site = dict(base=str(base), collections=collections, project=os.path.join(AWX_DIR, "project"), dsn=dsn,
                password=password, key=key, registry_cred=registry_cred, home=str(home), jobs=[],
                templates={t["name"]: t for t in _load("job_templates.json")["job_templates"]},
                workflow=_load("job_templates.json")["workflow_job_templates"][0])
    yield site
    remove_leftovers(PREFIX, NETWORK)


def _inventory(nodes):
    """The AWX inventory of the jobs (as its script): the fleet settings for the test network on all, localhost
    for the pipeline stages, the nodes in knarr_nodes."""
    fleet = dict(knarr_node_network=NETWORK, knarr_node_subnet="172.28.0.0/24", knarr_node_gateway="172.28.0.1",
                 knarr_node_pool_start="172.28.0.10", knarr_node_pool_end="172.28.0.249",
                 knarr_node_provisioner_endpoint="172.28.0.1:9040", knarr_node_boot_timeout=30,
                 ansible_connection="local", ansible_python_interpreter=sys.executable)
    hostvars = {"localhost": {}}
    hostvars.update({"fenrir-%s" % label: dict(hv, knarr_node_label=label) for label, hv in nodes.items()})
    groups = {"all": {"vars": fleet, "hosts": ["localhost"]},
              "knarr_nodes": {"hosts": ["fenrir-%s" % label for label in nodes]}}
    return awx.inventory_script(groups, hostvars)


def _launch(site, template_name, inventory, runtime=None, **job_options):
    """Launch a job template as AWX does (extra vars: the template's, survey defaults, the launch's; the survey's
    checks) with the registry credential, and run it."""
    template = site["templates"][template_name]
    survey = _load(template["survey"]) if template.get("survey") else None
    extra = awx.launch_extra_vars(template, survey, runtime)
    assert awx.launch_errors(survey, extra) == []
    job = awx.Job(site["base"], site["project"], site["collections"], template["playbook"], inventory, extra,
                  credentials=[site["registry_cred"]], bin_dir=VENV_BIN, home=site["home"],
                  template_name=template_name, **job_options)
    site["jobs"].append(job)
    return job.run()


def _registry(site):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry
    key_file = os.path.join(site["base"], "scan.key")
    with open(key_file, "w") as fh:
        fh.write(site["key"])
    os.chmod(key_file, 0o600)
    return Registry(site["dsn"], key_file=key_file)


def _plain(value):
    """A value of ansible-inventory --list: ansible-core 2.19 shows an untrusted string as {"__ansible_unsafe": ...}."""
    return value.get("__ansible_unsafe") if isinstance(value, dict) else value


def _stats(job):
    return next(e["event_data"] for e in job.events() if e["event"] == "playbook_on_stats")


def _tls_key(label):
    """The node's TLS key (key.pem, made by the node from its seed) as it is in its container."""
    bits, dummy = CLIENT.api.get_archive("fenrir-" + label, "/opt/knarr/key.pem")
    with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
        return tar.extractfile(tar.getmembers()[0]).read().decode()


def _secrets(site, labels, extra=()):
    """Every secret a job could leak, in the forms it could take."""
    found = {"registry key": site["key"], "database password": site["password"]}
    with _registry(site) as reg:
        for label in labels:
            seed = reg.get_seed(label)
            token = reg.get_secret(label, "cockpit_token")
            assert seed and token, label
            found["cockpit token of %s" % label] = token
            found["seed of %s (hex)" % label] = seed.hex()
            found["seed of %s (base64)" % label] = base64.b64encode(seed).decode()
            found["node.db of %s" % label] = _node_db_b64(seed)[:200]
    for name, pem in extra:
        for i, line in enumerate(l for l in pem.splitlines() if l and not l.startswith("-----")):
            found["%s line %d" % (name, i)] = line
    return found


def _scan(jobs, secrets, public):
    """No secret in any file ansible-runner wrote for any of the jobs (events, stdout, artifacts, command); the
    ``public`` value (a node id) is found there, so the scan reads what the jobs wrote."""
    leaks = []
    scanned = seen = 0
    for job in jobs:
        for path in job.written_by_runner():
            with open(path, "rb") as fh:
                content = fh.read()
            scanned += 1
            seen += public.encode() in content
            for name, value in secrets.items():
                if value.encode() in content or json.dumps(value)[1:-1].encode() in content:
                    leaks.append("%s in %s" % (name, os.path.relpath(path, job.dir)))
    assert scanned > 20 and seen > 0 and not leaks, leaks


def test_provision_job_template_runs_as_awx_runs_it(awx_site):
    site = awx_site
    # Each node's cockpit token is its own, made by the collection and kept encrypted in the registry.
    nodes = {"awx-a": dict(knarr_node_location="eu-north"),
             # An identity given in the inventory (the role's knarr_node_db_b64): a secret in a host's settings.
             "awx-b": dict(knarr_node_location="eu-west", knarr_node_ip="172.28.0.100", knarr_node_db_b64=GIVEN_DB)}
    inventory = _inventory(nodes)
    first = _launch(site, "fenrir.fleet provision", inventory, verbosity=1, diff_mode=True)
    assert first.rc == 0, first.failure()
    results = first.task_results("Result of every node")[0]["knarr_node_results"]
    assert "knarr.toml" in first.stdout() and "auth_token" in first.stdout()  # the diff was shown, and masked
    assert results == {"awx-a": dict(status="ok", ip="172.28.0.10", server_id="fenrir-awx-a", provider="docker"),
                       "awx-b": dict(status="ok", ip="172.28.0.100", server_id="fenrir-awx-b", provider="docker")}
    # The collection ran from requirements_collections (the installed tarball), found through AWX's paths.
    command = json.load(open(os.path.join(first.artifact_dir, "command")))
    assert command["env"]["ANSIBLE_COLLECTIONS_PATHS"].startswith(os.path.join(first.dir, "requirements_collections"))
    assert "-e @%s" % os.path.join(first.dir, "env") in " ".join(command["command"])  # the credential's extra vars
    with _registry(site) as reg:
        assert {n["label"]: n["status"] for n in reg.all()} == {"awx-a": "online", "awx-b": "online"}
        node_ids = {n["label"]: n["node_id"] for n in reg.all()}
        assert reg.get_seed("awx-b") == GIVEN_SEED
    tls_keys = [("TLS key of %s" % label, _tls_key(label)) for label in nodes]

    # Re-run: nothing changes; at -vvv with --diff, and the custom stats shown.
    again = _launch(site, "fenrir.fleet provision", inventory, verbosity=3, diff_mode=True,
                    env=dict(ANSIBLE_SHOW_CUSTOM_STATS="true"))
    assert again.rc == 0, again.failure()
    assert sum(_stats(again)["changed"].values()) == 0

    # The registry inventory source of the example project, with the credential's environment. AWX's inventory
    # updates set only ANSIBLE_COLLECTIONS_PATHS, which ansible-core 2.19 no longer reads: the collection must be in
    # the execution environment (execution-environment.yml puts it in /usr/share/ansible/collections, here
    # ANSIBLE_COLLECTIONS_PATH stands in for that).
    env, args = {}, []
    inv_dir = os.path.join(site["base"], "inventory-update")
    os.makedirs(os.path.join(inv_dir, "env"), exist_ok=True)
    awx.inject_credential(site["registry_cred"][0], site["registry_cred"][1], env, args, inv_dir)
    listed = subprocess.run([os.path.join(VENV_BIN, "ansible-inventory"), "--list", "-i",
                             os.path.join(site["project"], "inventories", "registry.fleet.yml")],
                            env=awx.clean_ansible_env(ANSIBLE_COLLECTIONS_PATH=site["collections"], HOME=site["home"],
                                                      **env),
                            cwd=site["project"], capture_output=True, text=True, check=False)
    assert listed.returncode == 0, listed.stderr
    hostvars = json.loads(listed.stdout)["_meta"]["hostvars"]
    assert "awx-b" in hostvars, listed.stderr + listed.stdout
    assert _plain(hostvars["awx-b"]["ansible_host"]) == "172.28.0.100"
    assert _plain(hostvars["awx-a"]["fleet_status"]) == "online"
    kept = json.dumps(awx.safe_env(env))  # the job environment AWX stores: paths and the DSN, no secret
    assert site["password"] not in kept and site["key"] not in kept and site["dsn"] in kept

    secrets = _secrets(site, nodes, tls_keys)
    secrets["node.db given for awx-b"] = GIVEN_DB[:200]
    gone = _launch(site, "fenrir.fleet decommission", inventory, verbosity=3, diff_mode=True)
    assert gone.rc == 0, gone.failure()
    assert not [c for c in CLIENT.containers.list(all=True, filters={"label": "fenrir.fleet.role=knarr-node"})
                if c.labels.get("fenrir.fleet.label", "").startswith(PREFIX)]
    with _registry(site) as reg:
        assert {n["label"]: n["status"] for n in reg.all()} == {"awx-a": "destroyed", "awx-b": "destroyed"}
    _scan([first, again, gone], secrets, node_ids["awx-a"])


def test_workflow_passes_artifacts_as_awx_does(awx_site):
    site = awx_site
    workflow = site["workflow"]
    survey = _load(workflow["survey"])
    answers = dict(fenrir_label="awx-w", fenrir_location="lab", fenrir_ip="172.28.0.77", fenrir_dry_run="false")
    assert awx.survey_spec_errors(survey) == []
    workflow_vars = awx.launch_extra_vars(workflow, survey, answers)
    assert awx.launch_errors(survey, workflow_vars) == []
    inventory = _inventory({})
    jobs, parents = [], []
    stage_env = dict(ANSIBLE_SHOW_CUSTOM_STATS="true")
    for node in workflow["nodes"]:
        runtime, ancestors = awx.workflow_extra_vars(parents, workflow_vars)
        job = _launch(site, node["unified_job_template"], inventory, runtime=runtime, verbosity=3, env=stage_env,
                      launch_type="workflow")
        assert job.rc == 0, job.failure()
        jobs.append(job)
        parents = [(ancestors, job.artifacts())]
    prepared, setup, booted, registered = jobs
    payload = json.loads(prepared.artifacts()["payload_json"])
    assert set(payload) == {"label", "location", "nonce", "node_id", "provisioner_node_id", "ip"}
    assert payload["label"] == "awx-w" and payload["ip"] == "172.28.0.77"
    # Each stage got its parents' artifacts as extra vars (payload_json reached register-fleet through two stages).
    assert json.loads(registered.extra_vars["payload_json"]) == payload
    assert setup.extra_vars["fenrir_dry_run"] == "false"  # the workflow's answer over the template's default
    contract = dict(status="ok", ip="172.28.0.77", server_id="fenrir-awx-w", provider="docker")
    assert setup.artifacts()["fenrir_result"] == contract
    assert booted.artifacts()["fenrir_result"] == contract
    assert registered.artifacts()["fenrir_result"] == contract
    with _registry(site) as reg:
        record = reg.get("awx-w")
    assert record["status"] == "online" and record["node_id"] == payload["node_id"]
    _scan(jobs, _secrets(site, ["awx-w"], [("TLS key of awx-w", _tls_key("awx-w"))]), payload["node_id"])
