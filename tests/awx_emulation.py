"""AWX's way of running jobs, reproduced for the tests (no AWX server: its rules, read from ansible/awx, re-written).

Where each rule comes from (ansible/awx, devel as of 2024-10):

* the private data directory -- ``awx/main/tasks/jobs.py`` (``BaseTask.build_private_data_dir``, ``build_env``,
  ``write_inventory_file``, ``write_args_file``, ``RunJob.build_env`` / ``build_args`` / ``build_extra_vars_file``,
  the ``params`` and ``runner_settings`` handed to ansible-runner): ``env/extravars`` (YAML, every string
  ``!unsafe``), ``env/cmdline``, ``env/settings``, ``inventory/hosts`` (an executable script printing the inventory
  as JSON), ``project/`` (the project without ``.git``), ``requirements_collections/`` on
  ``ANSIBLE_COLLECTIONS_PATHS`` / ``ANSIBLE_COLLECTIONS_PATH`` ahead of ``~/.ansible/collections``, the job's
  environment passed to ansible-runner (``envvars``, ``suppress_env_files=True``), never written to ``env/``;
* extra vars of a launch -- ``awx/main/models/mixins.py`` (``_update_unified_job_kwargs``: the template's extra vars,
  then the survey defaults that pass the survey's own checks, then the launch's; ``_survey_element_validation``);
* survey specs -- ``awx/api/views/__init__.py`` (``JobTemplateSurveySpec._validate_spec_data``);
* credential types -- ``awx/main/fields.py`` (``CredentialTypeInputField``, ``CredentialTypeInjectorField``) and
  ``awx/main/models/credential.py`` (``CredentialType.inject_credential``: file injectors rendered into 0600 files in
  ``env/``, ``tower.filename``, env injectors, extra_vars injectors into a file passed as ``-e @file``;
  ``build_safe_env``);
* workflows -- ``awx/main/models/workflow.py`` (``WorkflowJobNode.get_job_kwargs``: the parents' ancestor artifacts,
  then their jobs' artifacts, go into the next job's extra vars, and the workflow job's own extra vars win) and
  ``awx/main/tasks/callback.py`` (a job's artifacts are the ``artifact_data`` of its ``playbook_on_stats`` event).

Departures, on purpose: no container (the private data directory is where ``/runner`` would be), and
``suppress_output_file`` is off so that ``artifacts/<ident>/stdout`` exists for the tests to read and scan.
"""

import copy
import glob
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile

import yaml

# awx/main/constants.py
SURVEY_TYPE_MAPPING = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                       "integer": int, "float": (float, int)}
ENV_BLOCKLIST = frozenset(("VIRTUAL_ENV", "PATH", "PYTHONPATH", "JOB_ID", "INVENTORY_ID", "INVENTORY_SOURCE_ID",
                           "INVENTORY_UPDATE_ID", "AD_HOC_COMMAND_ID", "REST_API_URL", "REST_API_TOKEN", "MAX_EVENT_RES",
                           "CALLBACK_QUEUE", "CALLBACK_CONNECTION", "CACHE", "JOB_CALLBACK_DEBUG", "INVENTORY_HOSTVARS",
                           "AWX_HOST", "PROJECT_REVISION", "SUPERVISOR_CONFIG_PATH"))
NAME_RE = re.compile(r"^[a-zA-Z_]+[a-zA-Z0-9_]*$")
FILE_TEMPLATE_RE = re.compile(r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$")
EXTRA_VAR_RE = re.compile(r"^[a-zA-Z_\{\}]+[a-zA-Z0-9_\{\}]*$")
FIELD_KEYS = {"type", "format", "choices", "id", "label", "help_text", "multiline", "secret", "ask_at_runtime", "default"}


# --------------------------------------------------------------------------- extra vars

class _UnsafeDumper(yaml.SafeDumper):
    """Every string as ``!unsafe`` (AWX's safe_dump for extra vars nobody trusted)."""

    def represent_data(self, data):
        if isinstance(data, str):
            return self.represent_scalar("!unsafe", data)
        return super().represent_data(data)


def safe_dump(variables):
    return "".join(yaml.dump_all([{k: v}], None, Dumper=_UnsafeDumper, default_flow_style=False)
                   for k, v in variables.items())


# --------------------------------------------------------------------------- surveys

def survey_spec_errors(spec):
    """What AWX's survey_spec endpoint refuses in ``spec`` (a list of messages; empty: accepted)."""
    errors = []
    for field, kind in (("name", str), ("description", str), ("spec", list)):
        if not isinstance(spec.get(field), kind):
            errors.append("field %r missing or not a %s" % (field, kind.__name__))
    if errors:
        return errors
    if not spec["spec"]:
        return ["'spec' doesn't contain any items"]
    seen = set()
    for idx, item in enumerate(spec["spec"]):
        if not isinstance(item, dict):
            errors.append("question %d is not an object" % idx)
            continue
        for field in ("type", "question_name", "variable", "required"):
            kind = bool if field == "required" else str
            if not isinstance(item.get(field), kind):
                errors.append("question %d: %r missing or not a %s" % (idx, field, kind.__name__))
        if errors:
            continue
        if item["variable"] in seen:
            errors.append("question %d: variable %r duplicated" % (idx, item["variable"]))
        seen.add(item["variable"])
        qtype = item["type"]
        if qtype not in SURVEY_TYPE_MAPPING:
            errors.append("question %d: type %r is not one of %s" % (idx, qtype, ", ".join(SURVEY_TYPE_MAPPING)))
            continue
        if "default" in item and item["default"] != "" and not isinstance(item["default"], SURVEY_TYPE_MAPPING[qtype]):
            errors.append("question %d: default %r is not a %s" % (idx, item["default"], qtype))
            continue
        for key in ("min", "max"):
            if item.get(key) is not None and not isinstance(item[key], int):
                errors.append("question %d: %s is not an integer" % (idx, key))
        if qtype in ("multiplechoice", "multiselect"):
            if "choices" not in item:
                errors.append("question %d: %s needs choices" % (idx, qtype))
                continue
            choices = _choices(item)
            defaults = item.get("default", "")
            defaults = [d for d in defaults.splitlines() if d.strip()] if isinstance(defaults, str) else defaults
            if qtype == "multiplechoice" and len(defaults) > 1:
                errors.append("question %d: a multiplechoice has one default" % idx)
            if any(d not in choices for d in defaults):
                errors.append("question %d: default not among the choices" % idx)
        if isinstance(item.get("default"), str) and item["default"].startswith("$encrypted$") and qtype != "password":
            errors.append("question %d: $encrypted$ is reserved for password defaults" % idx)
    return errors


def _choices(item):
    choices = item["choices"]
    if isinstance(choices, str):
        choices = [c for c in choices.splitlines() if c.strip() != ""]
    return list(choices)


def survey_answer_errors(item, data):
    """AWX's check of one survey question against the variables ``data`` of a launch."""
    var = item["variable"]
    if var not in data:
        return ["%r value missing" % var] if item["required"] else []
    value = data[var]
    qtype = item["type"]
    if qtype in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return ["%r expected to be a string" % var]
        errors = []
        if item.get("min") not in ("", None) and len(value) < int(item["min"]):
            errors.append("%r too short" % var)
        if item.get("max") not in ("", None) and len(value) > int(item["max"]):
            errors.append("%r too long" % var)
        return errors
    if qtype in ("integer", "float"):
        # AWX compares type() exactly: a boolean is no integer.
        if isinstance(value, bool) or not isinstance(value, int if qtype == "integer" else (float, int)):
            return ["%r expected to be %s" % (var, qtype)]
        errors = []
        cast = int if qtype == "integer" else float
        if item.get("min") not in ("", None) and value < cast(item["min"]):
            errors.append("%r too small" % var)
        if item.get("max") not in ("", None) and value > cast(item["max"]):
            errors.append("%r too large" % var)
        return errors
    if qtype == "multiselect":
        if not isinstance(value, list):
            return ["%r expected to be a list" % var]
        return ["%r: %r not a choice" % (var, v) for v in value if v not in _choices(item)]
    if qtype == "multiplechoice" and value not in _choices(item):
        return ["%r: %r not a choice" % (var, value)]
    return []


def launch_extra_vars(template, survey=None, runtime=None):
    """A job's extra vars as AWX makes them at launch: the template's, then the survey's defaults that pass the
    survey's own checks, then the launch's (a workflow node's: artifacts and the workflow's variables)."""
    extra = dict(template.get("extra_vars") or {})
    for item in (survey or {}).get("spec", []):
        default = item.get("default")
        if default is not None and not survey_answer_errors(item, {item["variable"]: default}):
            extra[item["variable"]] = default
    extra.update(runtime or {})
    return extra


def launch_errors(survey, extra):
    """What the survey refuses in a launch's variables."""
    errors = []
    for item in (survey or {}).get("spec", []):
        errors += survey_answer_errors(item, extra)
    return errors


# --------------------------------------------------------------------------- credential types

def credential_type_errors(ctype):
    """What AWX refuses in a custom credential type's ``inputs`` and ``injectors``."""
    from jinja2 import StrictUndefined, sandbox
    from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
    errors = []
    inputs, injectors = ctype.get("inputs", {}), ctype.get("injectors", {})
    if set(inputs) - {"fields", "required"}:
        errors.append("inputs: unknown keys %s" % sorted(set(inputs) - {"fields", "required"}))
    ids = []
    for field in inputs.get("fields", []):
        if set(field) - FIELD_KEYS or "id" not in field or "label" not in field:
            errors.append("field %r: keys %s" % (field.get("id"), sorted(field)))
        if not NAME_RE.match(field.get("id", "")) or field.get("id") == "tower":
            errors.append("field id %r is not allowed" % field.get("id"))
        if field.get("id") in ids:
            errors.append("field id %r twice" % field["id"])
        ids.append(field.get("id"))
        ftype = field.get("type", "string")
        if ftype not in ("string", "boolean"):
            errors.append("field %r: type %r" % (field["id"], ftype))
        wanted = {"string": str, "boolean": bool}.get(ftype)
        if wanted and "default" in field and not (isinstance(field["default"], wanted) and (wanted is bool) == isinstance(
                field["default"], bool)):
            errors.append("field %r: default is not a %s" % (field["id"], ftype))
        for key in ("choices", "multiline", "format", "secret"):
            if key in field and ftype != "string":
                errors.append("field %r: %s only for strings" % (field["id"], key))
    for name in inputs.get("required", []):
        if name not in ids:
            errors.append("required %r is not a field" % name)
    if set(injectors) - {"file", "env", "extra_vars"}:
        errors.append("injectors: unknown keys %s" % sorted(set(injectors) - {"file", "env", "extra_vars"}))
    files = injectors.get("file", {})
    errors += ["file injector %r" % k for k in files if not FILE_TEMPLATE_RE.match(k)]
    for var, value in injectors.get("env", {}).items():
        if not NAME_RE.match(var) or not isinstance(value, str) or any(ord(c) > 127 for c in value):
            errors.append("env injector %r" % var)
        if var.startswith("ANSIBLE_") or var in ENV_BLOCKLIST:
            errors.append("env injector %r is not allowed in credentials" % var)

    class Filenames:
        pass

    class Tower:
        filename = Filenames()

    namespace = dict((f, "EXAMPLE") for f in ids)
    namespace["tower"] = Tower()
    names = [k for k in files if k.startswith("template")]
    if "template" in names:
        if len(names) > 1:
            return errors + ["file injectors: the single-file and multi-file syntax are mixed"]
        Tower.filename = "EXAMPLE_FILENAME"
    for name in names:
        if "." in name:
            setattr(Tower.filename, name.split(".", 1)[1], "EXAMPLE_FILENAME")
    env = sandbox.ImmutableSandboxedEnvironment(undefined=StrictUndefined)

    def check(where, template):
        try:
            env.from_string(template).render(namespace)
        except (UndefinedError, SecurityError, TemplateSyntaxError) as exc:
            errors.append("%s: %s" % (where, exc))

    def walk(key, node):
        if isinstance(node, dict):
            for k, v in node.items():
                if key is None and not EXTRA_VAR_RE.match(k):
                    errors.append("extra_vars injector %r" % k)
                check("extra_vars key", k)
                walk(k if key is None else "%s.%s" % (key, k), v)
        elif isinstance(node, list):
            for i, x in enumerate(node):
                walk("%s[%d]" % (key, i), x)
        elif isinstance(node, str):
            check("extra_vars %s" % key, node)
        else:
            errors.append("extra_vars %s: a %s, not a string" % (key, type(node).__name__))
    for kind in ("file", "env"):
        for key, template in injectors.get(kind, {}).items():
            check("%s %s" % (kind, key), template)
    walk(None, injectors.get("extra_vars", {}))
    return errors


def inject_credential(ctype, values, env, args, private_data_dir):
    """Render a custom credential type's injectors for one credential's ``values`` as AWX does for a job: files
    (0600) in ``env/``, then env vars and an extra vars file (``-e @file`` appended to ``args``).  Returns the
    paths of the files written."""
    from jinja2 import sandbox

    class Tower:
        pass

    tower = Tower()
    namespace = {"tower": tower}
    for field in ctype["inputs"].get("fields", []):
        value = values.get(field["id"])
        if field.get("type") == "boolean":
            namespace[field["id"]] = bool(value)
        elif value:
            namespace[field["id"]] = value
    jinja = sandbox.ImmutableSandboxedEnvironment()
    written = []
    for label, template in ctype["injectors"].get("file", {}).items():
        handle, path = tempfile.mkstemp(dir=os.path.join(private_data_dir, "env"))
        with os.fdopen(handle, "w") as fh:
            fh.write(jinja.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        written.append(path)
        if "." not in label:
            tower.filename = path
        else:
            if not hasattr(tower, "filename"):
                tower.filename = Tower()
            setattr(tower.filename, label.split(".", 1)[1], path)
    for var, template in ctype["injectors"].get("env", {}).items():
        env[var] = jinja.from_string(template).render(**namespace)

    def build(node):
        if isinstance(node, dict):
            return {build(k): build(v) for k, v in node.items()}
        if isinstance(node, list):
            return [build(x) for x in node]
        return jinja.from_string(node).render(**namespace)
    extra = build(ctype["injectors"].get("extra_vars", {}))
    if extra:
        handle, path = tempfile.mkstemp(dir=os.path.join(private_data_dir, "env"))
        with os.fdopen(handle, "w") as fh:
            fh.write(safe_dump(extra))
        os.chmod(path, stat.S_IRUSR)
        written.append(path)
        args.extend(["-e", "@%s" % path])
    return written


def safe_env(env):
    """What AWX keeps of a job's environment (``build_safe_env``): secret-looking names and URL passwords hidden."""
    hidden = re.compile(r"API|TOKEN|KEY|SECRET|PASS", re.I)
    urlpass = re.compile(r"^.*?://[^:]+:(.*?)@.*?$")
    out = dict(env)
    for k, v in out.items():
        ansible_setting = k.startswith("ANSIBLE_") and not k.startswith(("ANSIBLE_NET", "ANSIBLE_GALAXY_SERVER"))
        if k == "AWS_ACCESS_KEY_ID" or ansible_setting:
            continue
        if hidden.search(k):
            out[k] = "**********"
        elif isinstance(v, str) and urlpass.match(v):
            out[k] = urlpass.sub("**********", v)
    return out


# --------------------------------------------------------------------------- jobs

def inventory_script(groups, hostvars):
    """An AWX inventory as the executable script AWX writes (``get_script_data(hostvars=True, towervars=True)``):
    ``groups`` = {group: {"hosts": [...], "vars": {...}, "children": [...]}}, ``hostvars`` = {host: {...}}."""
    data = {"all": {"hosts": [], "children": sorted(g for g in groups if g != "all"), "vars": {}}}
    data["all"].update(groups.get("all", {}))
    for name, group in groups.items():
        if name != "all":
            data[name] = dict(hosts=list(group.get("hosts", [])), vars=dict(group.get("vars", {})),
                              children=list(group.get("children", [])))
    data["_meta"] = {"hostvars": {host: dict(hv, remote_tower_enabled="true", remote_tower_id=i + 1)
                                  for i, (host, hv) in enumerate(sorted(hostvars.items()))}}
    return "#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n" % json.dumps(data)


class Job:
    """One AWX job: its private data directory, laid out before it runs, and what ansible-runner left."""

    _ids = [1000]

    def __init__(self, base, project, collections, playbook, inventory, extra_vars, credentials=(), verbosity=0,
                 diff_mode=False, job_type="run", limit=None, env=None, bin_dir=None, home=None, template_name=None,
                 launch_type="manual"):
        Job._ids[0] += 1
        self.id = Job._ids[0]
        self.dir = tempfile.mkdtemp(prefix="awx_%d_" % self.id, dir=base)
        os.chmod(self.dir, stat.S_IRWXU)
        for sub in ("inventory", "env"):
            os.mkdir(os.path.join(self.dir, sub))
        shutil.copytree(project, os.path.join(self.dir, "project"), ignore=shutil.ignore_patterns(".git"))
        shutil.copytree(collections, os.path.join(self.dir, "requirements_collections"), symlinks=True)
        self.playbook = playbook
        self.extra_vars = dict(extra_vars)
        # AWX's meta variables override the template's (RunJob.build_extra_vars_file, awx_meta_vars).
        for prefix in ("awx", "tower"):
            self.extra_vars.update({"%s_job_id" % prefix: self.id, "%s_job_launch_type" % prefix: launch_type,
                                    "%s_job_template_name" % prefix: template_name or playbook,
                                    "%s_inventory_id" % prefix: 1, "%s_inventory_name" % prefix: "fleet",
                                    "%s_user_name" % prefix: "admin"})
        self._write("env/extravars", safe_dump(self.extra_vars))
        args = ["-u", "root"]
        if job_type == "check":
            args.append("--check")
        if diff_mode:
            args.append("--diff")
        if limit:
            args.extend(["-l", limit])
        if verbosity:
            args.append("-" + "v" * min(5, verbosity))
        self.env = self._base_env(bin_dir, home)
        self.written = []
        for ctype, values in credentials:
            self.written += inject_credential(ctype, values, self.env, args, self.dir)
        self.env.update(env or {})
        self.args = args
        from ansible_runner.utils import args2cmdline
        self._write("env/cmdline", args2cmdline(*args))
        self._write("env/settings", json.dumps({"job_timeout": 0, "suppress_ansible_output": True,
                                                "suppress_output_file": False}))
        self.inventory = self._write("inventory/hosts", inventory, mode=0o700)
        self.inputs = {p: self._stamp(p) for p in self.files()}
        self.runner = None

    def _write(self, name, content, mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "w") as fh:
            fh.write(content)
        os.chmod(path, mode)
        return path

    def _base_env(self, bin_dir, home):
        env = {"ANSIBLE_FORCE_COLOR": "True", "ANSIBLE_HOST_KEY_CHECKING": "False",
               "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True", "ANSIBLE_PARAMIKO_RECORD_HOST_KEYS": "False",
               "AWX_PRIVATE_DATA_DIR": self.dir, "JOB_ID": str(self.id), "INVENTORY_ID": "1",
               "ANSIBLE_RETRY_FILES_ENABLED": "False", "MAX_EVENT_RES": "700000", "AWX_HOST": "https://awx.invalid",
               "ANSIBLE_SSH_CONTROL_PATH_DIR": os.path.join(self.dir, "cp")}
        os.mkdir(os.path.join(self.dir, "cp"), 0o700)
        root = self.dir  # where /runner would be in the execution environment
        for key, folder, default in (
                ("ANSIBLE_COLLECTIONS_PATHS", "requirements_collections", "~/.ansible/collections:/usr/share/ansible/collections"),
                ("ANSIBLE_ROLES_PATH", "requirements_roles", "~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles"),
                ("ANSIBLE_COLLECTIONS_PATH", "requirements_collections", "~/.ansible/collections:/usr/share/ansible/collections")):
            env[key] = os.pathsep.join([os.path.join(root, folder)] + default.split(":"))
        if bin_dir:  # the execution environment's Python and Ansible
            env["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        if home:
            env["HOME"] = home
        return env

    def files(self):
        out = []
        for dirpath, dirs, names in os.walk(self.dir):
            for name in names:
                out.append(os.path.join(dirpath, name))
        return out

    def run(self):
        import ansible_runner
        self.runner = ansible_runner.run(private_data_dir=self.dir, ident=str(self.id), playbook=self.playbook,
                                         inventory=self.inventory, envvars=self.env, suppress_env_files=True,
                                         quiet=True)
        return self

    @property
    def rc(self):
        return self.runner.rc

    @property
    def artifact_dir(self):
        return os.path.join(self.dir, "artifacts", str(self.id))

    def events(self):
        out = []
        for path in glob.glob(os.path.join(self.artifact_dir, "job_events", "*.json")):
            with open(path) as fh:
                out.append(json.load(fh))
        return sorted(out, key=lambda e: e["counter"])

    def artifacts(self):
        """The job's artifacts as AWX keeps them: the artifact_data of its playbook_on_stats event."""
        for event in self.events():
            if event.get("event") == "playbook_on_stats" and event.get("event_data", {}).get("artifact_data"):
                return event["event_data"]["artifact_data"]
        return {}

    def stdout(self):
        with open(os.path.join(self.artifact_dir, "stdout"), errors="replace") as fh:
            return fh.read()

    def task_results(self, name_part):
        """The ``res`` of every runner_on_ok/failed event of tasks whose name contains ``name_part``."""
        return [e["event_data"]["res"] for e in self.events()
                if e.get("event") in ("runner_on_ok", "runner_on_failed")
                and name_part in e.get("event_data", {}).get("task", "")]

    @staticmethod
    def _stamp(path):
        st = os.lstat(path)
        return st.st_mtime_ns, st.st_size

    def written_by_runner(self):
        """Every file in the private data directory that AWX did not lay out before the run, or that changed
        since: ansible-runner's artifacts (command, job_events, stdout, status, rc) and whatever the run left."""
        return sorted(p for p in self.files() if self.inputs.get(p) != self._stamp(p))

    def failure(self):
        return "job %d (%s) rc %s:\n%s" % (self.id, self.playbook, self.rc, self.stdout()[-4000:])


def workflow_extra_vars(parents_artifacts, workflow_vars, node_vars=None):
    """The extra vars a workflow node's job is launched with: the node's own prompts, then the ancestors'
    artifacts (each parent's ancestor artifacts, then its job's), then the workflow job's variables, which win."""
    artifacts = {}
    for ancestor, own in parents_artifacts:
        artifacts.update(ancestor)
        artifacts.update(own)
    extra = dict(node_vars or {})
    functional = copy.copy(artifacts)
    functional.pop("_ansible_no_log", None)
    extra.update(functional)
    extra.update(workflow_vars)
    return extra, artifacts


def build_collection(repo, out_dir, ansible_galaxy="ansible-galaxy"):
    """ansible-galaxy collection build of the repository: the tarball's path."""
    subprocess.run([ansible_galaxy, "collection", "build", "--force", "--output-path", out_dir, repo],
                   cwd=out_dir, env=clean_ansible_env(), check=True, capture_output=True, text=True)
    return glob.glob(os.path.join(out_dir, "fenrir-fleet-*.tar.gz"))[0]


def install_collection(tarball, dest, ansible_galaxy="ansible-galaxy"):
    """Install the tarball into ``dest`` (an empty collections path), as a project update does. Its dependency
    (community.crypto) is not fetched: no Galaxy server is reachable from these machines, and the ansible package
    in the controller's (or the EE's) Python already carries it, as an AWX execution environment does."""
    proc = subprocess.run([ansible_galaxy, "collection", "install", "--force", "--no-deps", "-p", dest, tarball],
                          cwd=os.path.dirname(tarball), env=clean_ansible_env(), check=False, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise AssertionError("install failed: %s%s" % (proc.stdout, proc.stderr))
    return os.path.join(dest, "ansible_collections", "fenrir", "fleet")


def clean_ansible_env(**extra):
    """The environment without the checkout's Ansible configuration (ANSIBLE_CONFIG points at the clone's
    collections link): what a machine with only the installed collection has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(extra)
    return env
