"""awx/: survey specs, credential types, job templates and the workflow, checked against AWX's own rules
(tests/awx_emulation.py, read from ansible/awx), and against what the collection reads."""
import glob
import json
import os
import re
import stat

import pytest
import yaml

import awx_emulation as awx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
AWX = os.path.join(ROOT, "awx")
SURVEYS = sorted(glob.glob(os.path.join(AWX, "surveys", "*.json")))
CREDENTIAL_TYPES = sorted(glob.glob(os.path.join(AWX, "credential_types", "*.json")))


def load(path):
    with open(path) as fh:
        return json.load(fh)


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as fh:
        return fh.read()


TEMPLATES = load(os.path.join(AWX, "job_templates.json"))


# --------------------------------------------------------------------------- surveys

@pytest.mark.parametrize("path", SURVEYS, ids=os.path.basename)
def test_survey_specs_pass_awx_rules(path):
    spec = load(path)
    assert awx.survey_spec_errors(spec) == []
    for item in spec["spec"]:  # a default AWX would drop (it fails the question's own checks) must be ""
        if item.get("default") not in (None, ""):
            assert awx.survey_answer_errors(item, {item["variable"]: item["default"]}) == [], item["variable"]


@pytest.mark.parametrize("spec, error", [
    ({"name": "x", "description": "", "spec": []}, "doesn't contain any items"),
    ({"name": "x", "spec": [{}]}, "description"),
    ({"name": "x", "description": "", "spec": [dict(type="text", question_name="a", variable="v", required="yes")]},
     "'required'"),
    ({"name": "x", "description": "", "spec": [dict(type="boolean", question_name="a", variable="v", required=True)]},
     "type 'boolean'"),
    ({"name": "x", "description": "", "spec": [
        dict(type="multiplechoice", question_name="a", variable="v", required=True, choices=["true", "false"],
             default=True)]}, "default True"),
    ({"name": "x", "description": "", "spec": [
        dict(type="multiplechoice", question_name="a", variable="v", required=True, choices=["true", "false"],
             default="yes")]}, "not among the choices"),
    ({"name": "x", "description": "", "spec": [
        dict(type="text", question_name="a", variable="v", required=True),
        dict(type="text", question_name="b", variable="v", required=True)]}, "duplicated"),
])
def test_survey_rules_refuse_what_awx_refuses(spec, error):
    assert any(error in e for e in awx.survey_spec_errors(spec)), awx.survey_spec_errors(spec)


def test_dry_run_is_a_true_false_choice_the_playbooks_take_as_a_boolean():
    """AWX surveys have no boolean type: dry run is a multiplechoice of exactly "true" and "false", which
    setup_docker.yml turns into a boolean with fenrir.fleet.survey_bool (and nothing else)."""
    for name in ("setup_docker.json", "workflow.json"):
        item = next(i for i in load(os.path.join(AWX, "surveys", name))["spec"] if i["variable"] == "fenrir_dry_run")
        assert item["type"] == "multiplechoice" and item["choices"] == ["true", "false"] and item["default"] == "true"
        assert awx.survey_answer_errors(item, {"fenrir_dry_run": "False"}) != []
    assert "fenrir_dry_run | fenrir.fleet.survey_bool('fenrir_dry_run')" in read("playbooks", "setup_docker.yml")


def test_survey_defaults_and_launch_values_as_awx_merges_them():
    template = dict(extra_vars={"fenrir_target": "all", "other": 1})
    survey = load(os.path.join(AWX, "surveys", "provision.json"))
    assert awx.launch_extra_vars(template, survey) == {"fenrir_target": "knarr_nodes", "knarr_node_boot_timeout": 60,
                                                       "other": 1}
    launched = awx.launch_extra_vars(template, survey, {"knarr_node_boot_timeout": 5000})
    assert awx.launch_errors(survey, launched) == ["'knarr_node_boot_timeout' too large"]
    prepare = load(os.path.join(AWX, "surveys", "prepare_payload.json"))
    # An empty label is no default: AWX leaves it out, and the launch must answer it.
    assert "fenrir_label" not in awx.launch_extra_vars({}, prepare)
    assert awx.launch_errors(prepare, awx.launch_extra_vars({}, prepare)) == ["'fenrir_label' value missing",
                                                                              "'fenrir_location' value missing"]


def test_every_survey_variable_is_read_by_its_playbook():
    for template in TEMPLATES["job_templates"] + TEMPLATES["workflow_job_templates"]:
        if not template.get("survey"):
            continue
        playbooks = [template["playbook"]] if "playbook" in template else [
            next(t["playbook"] for t in TEMPLATES["job_templates"] if t["name"] == n["unified_job_template"])
            for n in template["nodes"]]
        text = "".join(read("playbooks", p) for p in playbooks) + read("roles", "knarr_node", "meta",
                                                                       "argument_specs.yml")
        for item in load(os.path.join(AWX, template["survey"]))["spec"]:
            assert item["variable"] in text, (template["name"], item["variable"])


# --------------------------------------------------------------------------- job templates, workflow, project

def test_job_templates_run_the_collection_playbooks_of_the_example_project():
    names = {t["name"] for t in TEMPLATES["job_templates"]}
    for template in TEMPLATES["job_templates"]:
        project_playbook = yaml.safe_load(read("awx", "project", template["playbook"]))
        target = project_playbook[0]["ansible.builtin.import_playbook"]
        assert target.startswith("fenrir.fleet.")
        assert os.path.isfile(os.path.join(ROOT, "playbooks", target.split(".")[-1] + ".yml"))
        assert all(c in [load(p)["name"] for p in CREDENTIAL_TYPES] for c in template["credential_types"])
    nodes = TEMPLATES["workflow_job_templates"][0]["nodes"]
    assert [n["identifier"] for n in nodes] == ["prepare-payload", "setup-docker", "wait-for-boot", "register-fleet"]
    assert all(n["unified_job_template"] in names for n in nodes)
    assert [n["success_nodes"] for n in nodes] == [["setup-docker"], ["wait-for-boot"], ["register-fleet"], []]


def test_example_project_requires_this_version_of_the_collection():
    from ansible.module_utils.compat.version import LooseVersion
    version = yaml.safe_load(read("galaxy.yml"))["version"]
    wanted = yaml.safe_load(read("awx", "project", "collections", "requirements.yml"))["collections"][0]
    low, high = re.match(r">=([\d.]+),<([\d.]+)$", wanted["version"]).groups()
    assert wanted["name"] == "fenrir.fleet" and LooseVersion(low) <= LooseVersion(version) < LooseVersion(high)
    ee = yaml.safe_load(read("awx", "ee", "requirements.yml"))["collections"][0]
    assert ee["name"] == "collections/fenrir-fleet-%s.tar.gz" % version


def test_workflow_artifacts_and_the_workflows_own_variables():
    """The ancestors' artifacts go into the next job's extra vars, a nearer stage's over an older one's, and the
    workflow job's own variables win over both; AWX's _ansible_no_log marker is not passed on."""
    first = ({}, {"payload_json": "{}", "fenrir_result": {"status": "dry_run"}, "_ansible_no_log": False})
    extra, ancestors = awx.workflow_extra_vars([first], {"fenrir_label": "w"}, {"node_prompt": 1})
    assert extra == {"node_prompt": 1, "payload_json": "{}", "fenrir_result": {"status": "dry_run"}, "fenrir_label": "w"}
    second = (ancestors, {"fenrir_result": {"status": "ok"}, "fenrir_label": "from-a-stage"})
    extra, dummy = awx.workflow_extra_vars([second], {"fenrir_label": "w"})
    assert extra["fenrir_result"] == {"status": "ok"} and extra["fenrir_label"] == "w"
    assert extra["payload_json"] == "{}"


def test_extra_vars_are_written_unsafe_as_awx_writes_them():
    text = awx.safe_dump({"payload_json": '{"label": "{{ lookup(\'pipe\', \'id\') }}"}', "n": 1})
    assert text.startswith("!unsafe 'payload_json': !unsafe ") and "!unsafe 'n': 1\n" in text


# --------------------------------------------------------------------------- credential types

@pytest.mark.parametrize("path", CREDENTIAL_TYPES, ids=os.path.basename)
def test_credential_types_pass_awx_rules(path):
    ctype = load(path)
    assert set(ctype) == {"name", "description", "kind", "inputs", "injectors"} and ctype["kind"] == "cloud"
    assert awx.credential_type_errors(ctype) == []
    secret = [f["id"] for f in ctype["inputs"]["fields"] if f.get("secret")]
    assert secret  # every secret field reaches the job as a file, never as an environment variable
    for var, template in ctype["injectors"]["env"].items():
        assert not any(re.search(r"\{\{\s*%s\b" % name, template) for name in secret), var


@pytest.mark.parametrize("injectors, error", [
    ({"env": {"ANSIBLE_CONFIG": "{{ dsn }}"}}, "not allowed in credentials"),
    ({"env": {"PATH": "{{ dsn }}"}}, "not allowed in credentials"),
    ({"env": {"X": "{{ nope }}"}}, "undefined"),
    ({"env": {"X": "{{ tower.filename.key }}"}}, "has no attribute"),
    ({"file": {"template": "a", "template.key": "b"}}, "mixed"),
    ({"extra_vars": {"x": 1}}, "not a string"),
])
def test_credential_rules_refuse_what_awx_refuses(injectors, error):
    ctype = dict(inputs={"fields": [{"id": "dsn", "label": "DSN"}]}, injectors=injectors)
    assert any(error in e for e in awx.credential_type_errors(ctype)), awx.credential_type_errors(ctype)


def _inject(tmp_path, name, values):
    (tmp_path / "env").mkdir(exist_ok=True)
    env, args = {}, []
    files = awx.inject_credential(load(os.path.join(AWX, "credential_types", name)), values, env, args, str(tmp_path))
    extra = {}
    if args:
        with open(args[1][1:]) as fh:
            extra = yaml.load(fh, Loader=_UnsafeLoader)  # noqa: S506 - a SafeLoader that reads !unsafe
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    return env, extra


class _UnsafeLoader(yaml.SafeLoader):
    pass


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def test_registry_credential_gives_what_the_collection_reads(tmp_path):
    from cryptography.fernet import Fernet
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.keys import ENV_KEY_FILE, KeySource
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import Location
    key = Fernet.generate_key().decode()
    dsn = "postgresql://fleet@db.example:5432/fleet"
    env, extra = _inject(tmp_path, "fenrir_fleet_registry.json",
                         dict(dsn=dsn, password="pa:ss\\word", registry_key=key))
    assert extra == {"knarr_node_registry": dsn, "tenants_registry": dsn}
    assert env["FENRIR_REGISTRY"] == dsn and ENV_KEY_FILE in env
    assert KeySource(Location(dsn), environ=env).load(create=False).decode() == key
    with open(env["PGPASSFILE"]) as fh:  # libpq's passfile: ':' and '\' escaped
        assert fh.read() == "*:*:*:*:pa\\:ss\\\\word"  # (Jinja drops a template's last newline)
    kept = json.dumps(awx.safe_env(env))
    assert key not in kept and "pa:ss" not in kept
    # The variables it sets are the collection's.
    assert "FENRIR_REGISTRY" in read("plugins", "inventory", "fleet.py")
    specs = read("roles", "knarr_node", "meta", "argument_specs.yml") + read("roles", "tenants", "meta",
                                                                             "argument_specs.yml")
    assert all(var in specs for var in extra)


def test_docker_tls_credential_gives_what_the_connection_options_read(tmp_path):
    from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import connection_params
    values = dict(docker_host="tcp://10.1.2.3:2376", tls_hostname="", ca_cert="CA PEM\n", client_cert="CERT PEM\n",
                  client_key="KEY PEM\n")
    env, extra = _inject(tmp_path, "fenrir_fleet_docker_tls.json", values)
    tls = connection_params({}, environ=env)["tls"]
    assert tls["verify"] is True and tls["assert_hostname"] == "10.1.2.3"
    for option, content in (("ca_cert", "CA PEM\n"), ("client_cert", "CERT PEM\n"), ("client_key", "KEY PEM\n")):
        with open(tls[option]) as fh:
            assert fh.read() == content
    tenants = extra["tenants_docker"]
    assert tenants["client_key"] == env["FENRIR_DOCKER_CLIENT_KEY"] and tenants["docker_host"] == values["docker_host"]
    assert "KEY PEM" not in json.dumps(awx.safe_env(env))
    assert "tenants_docker" in read("roles", "tenants", "meta", "argument_specs.yml")
