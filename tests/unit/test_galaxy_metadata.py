"""galaxy.yml and meta/runtime.yml say what the collection really needs: the collections it uses (with version
ranges), the ansible-core versions it is tested on, the Python packages of its execution environment."""
import glob
import os
import re

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# Where collection content is: what Ansible runs and what the plugins import.
CONTENT = ("plugins", "roles", "playbooks", "meta", "awx/project", "inventories")
OWN = {"ansible.builtin", "ansible.legacy", "fenrir.fleet"}
_NAME = r"([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.[a-z_][a-z0-9_.]*"
# How content names another collection's content: a task's module, a role, a playbook, a plugin, a filter or
# lookup, a doc fragment.
FQCN = re.compile(r"^\s*-?\s*%s:(\s|$)" % _NAME + r"|(?:name|import_playbook|plugin|role|module|action|"
                  r"stdout_callback):\s*[\"']?%s" % _NAME + r"|\|\s*%s" % _NAME + r"|(?:lookup|query)\(\s*['\"]%s" % _NAME
                  + r"|^\s*-\s*%s\s*$" % _NAME, re.M)
IMPORTED = re.compile(r"ansible_collections\.([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)")


def _load(path):
    with open(os.path.join(ROOT, path)) as fh:
        return yaml.safe_load(fh)


def _installed(name):
    """Whether ``name`` is a collection this controller has (the ansible package's, or any on the path)."""
    import importlib.util
    try:
        return importlib.util.find_spec("ansible_collections.%s" % name) is not None
    except (ImportError, ValueError):
        return False


def used_collections():
    used = {}
    for top in CONTENT:
        for path in glob.glob(os.path.join(ROOT, top, "**", "*"), recursive=True):
            if not path.endswith((".yml", ".yaml", ".py")) or "__pycache__" in path:
                continue
            with open(path) as fh:
                text = fh.read()
            names = {"%s.%s" % m.groups() for m in IMPORTED.finditer(text)}
            if path.endswith(".py"):  # Python code names collections in its imports; its docs as YAML does
                text = "\n".join(re.findall(r'^(?:DOCUMENTATION|EXAMPLES|RETURN) = r?"""(.*?)"""', text, re.M | re.S))
            elif top == "inventories":  # host names look like FQCNs; an inventory names a collection as its plugin
                text = "\n".join(re.findall(r"^\s*plugin:.*$", text, re.M))
            for m in FQCN.finditer(text):
                groups = [g for g in m.groups() if g is not None and g.strip()]
                names.add("%s.%s" % tuple(groups[:2]))
            for name in names - OWN:
                if _installed(name):  # a host name such as docker1.example.net looks like one, but is none
                    used.setdefault(name, os.path.relpath(path, ROOT))
    return used


def test_every_collection_the_content_uses_is_a_declared_dependency_with_a_range():
    declared = _load("galaxy.yml").get("dependencies") or {}
    used = used_collections()
    # (today: community.crypto, for the docker_host role's PKI -- Docker itself goes through the Docker SDK)
    assert {name: where for name, where in used.items() if name not in declared} == {}
    for name, version in declared.items():
        assert re.match(r"^>=[\d.]+,<[\d.]+$", str(version)), (name, version)


def test_requires_ansible_covers_the_tested_controllers():
    from ansible.module_utils.compat.version import LooseVersion
    low, high = re.match(r"^>=([\d.]+),<([\d.]+)$", _load("meta/runtime.yml")["requires_ansible"]).groups()
    tested = []
    for path in ("requirements.txt", "requirements-core2.18.txt"):
        with open(os.path.join(ROOT, path)) as fh:
            tested += re.findall(r"^ansible-core==([\d.]+)", fh.read(), re.M)
    assert sorted(v.rsplit(".", 1)[0] for v in tested) == ["2.18", "2.19"]
    assert all(LooseVersion(low) <= LooseVersion(v) < LooseVersion(high) for v in tested)


def test_execution_environment_requirements():
    ee = _load("meta/execution-environment.yml")
    assert ee["version"] == 1
    with open(os.path.join(ROOT, ee["dependencies"]["python"])) as fh:
        python = [re.split(r"[<>=\[ ]", line)[0] for line in fh if line.strip() and not line.startswith("#")]
    assert sorted(python) == ["cryptography", "docker", "psycopg", "tomli_w"]
    assert os.path.isfile(os.path.join(ROOT, ee["dependencies"]["system"]))
    builder = _load("execution-environment.yml")
    assert builder["version"] == 3 and builder["dependencies"]["galaxy"] == "awx/ee/requirements.yml"
