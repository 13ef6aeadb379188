"""The collection as Galaxy ships it: what `ansible-galaxy collection build` puts in the tarball, the execution
environment ansible-builder makes of it, and the installed collection provisioning against the real engine under
both ansible-core minors the collection declares (2.19 from .venv, 2.18 from .venv-core2.18: make venv-core2.18).

Network fenrir-pkgtest (172.27.0.0/24), labels pkg-*; a SQLite registry in the test's directory.
"""
import os
import re
import shutil
import subprocess
import tarfile
import textwrap

import pytest
import yaml

from conftest import CLIENT, ROOT, VENV_BIN, remove_leftovers

import awx_emulation as awx

NETWORK = "fenrir-pkgtest"
PREFIX = "pkg-"
CORE218 = os.environ.get("FENRIR_CORE218_VENV", os.path.join(ROOT, ".venv-core2.18"))
# What a user of the collection needs, and what must never be in the tarball.
NEEDED = ("MANIFEST.json", "FILES.json", "README.md", "LICENSE", "CHANGELOG.md", "meta/runtime.yml",
          "meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt",
          "plugins/modules/knarr_container.py", "plugins/inventory/fleet.py", "roles/knarr_node/tasks/main.yml",
          "playbooks/provision.yml", "playbooks/prepare_payload.yml", "execution-environment.yml",
          "awx/credential_types/fenrir_fleet_registry.json", "awx/project/provision.yml")
NEVER = re.compile(r"^(tests|scripts|bench|images|molecule|state|collections|context|\.venv[^/]*|\.ci|"
                   r"changelogs/fragments)(/|$)|(^|/)(__pycache__|Makefile|ansible\.cfg|requirements.*\.txt|"
                   r"constraints.*\.txt|pytest\.ini)$|\.(pyc|tar\.gz)$|(^|/)fleet\.(db|key)$")


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    return awx.build_collection(ROOT, str(tmp_path_factory.mktemp("dist")), os.path.join(VENV_BIN, "ansible-galaxy"))


def _version():
    with open(os.path.join(ROOT, "galaxy.yml")) as fh:
        return yaml.safe_load(fh)["version"]


def test_tarball_holds_what_a_user_needs_and_nothing_else(tarball):
    with tarfile.open(tarball) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    assert os.path.basename(tarball) == "fenrir-fleet-%s.tar.gz" % _version()
    assert [n for n in NEEDED if n not in names] == []
    assert [n for n in names if NEVER.search(n)] == []


def test_execution_environment_from_the_installed_collection(tarball, tmp_path):
    """ansible-builder finds the collection's needs in the installed collection, and `create` makes the build
    context of execution-environment.yml (building it needs an RPM base image these machines cannot pull)."""
    installed = tmp_path / "collections"
    awx.install_collection(tarball, str(installed), os.path.join(VENV_BIN, "ansible-galaxy"))
    builder = os.path.join(VENV_BIN, "ansible-builder")
    found = subprocess.run([builder, "introspect", "--sanitize", str(installed)], capture_output=True, text=True,
                           check=True).stdout
    needs = yaml.safe_load(found[found.index("---"):])
    packages = sorted(re.split(r"[<>=\[ ]", p)[0] for p in needs["python"])
    assert packages == ["cryptography", "docker", "psycopg", "tomli_w"]
    assert any(s.startswith("libpq ") for s in needs["system"])

    # The EE definition and its galaxy requirements beside a copy of the tarball, as an operator lays them out.
    ee = tmp_path / "ee"
    shutil.copytree(os.path.join(ROOT, "awx", "ee"), ee / "awx" / "ee")
    shutil.copy(os.path.join(ROOT, "execution-environment.yml"), ee)
    shutil.copy(tarball, ee / "awx" / "ee")
    subprocess.run([builder, "create", "-f", "execution-environment.yml", "-c", "context"], cwd=ee, check=True,
                   capture_output=True, text=True)
    containerfile = (ee / "context" / "Dockerfile").read_text()
    assert 'ANSIBLE_INSTALL_REFS="ansible-core>=2.18,<2.20 ansible-runner>=2.4,<2.5"' in containerfile
    assert "ansible-galaxy collection install" in containerfile and "introspect" in containerfile
    assert (ee / "context" / "_build" / "collections" / os.path.basename(tarball)).is_file()
    requirements = yaml.safe_load((ee / "context" / "_build" / "requirements.yml").read_text())
    assert requirements["collections"][0]["name"] == "collections/" + os.path.basename(tarball)


def _recap(out):
    """changed= and failed= per host from the default callback's PLAY RECAP."""
    recap = out[out.rindex("PLAY RECAP"):]
    return {m.group(1): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"^(\S+)\s*:.*?changed=(\d+).*?failed=(\d+)", recap, re.M)}


@pytest.mark.parametrize("core", ["2.19", "2.18"])
def test_installed_collection_provisions_and_decommissions(core, tarball, tmp_path):
    """Installed into an empty collections path, with no configuration of this checkout: provision, a re-run that
    changes nothing, decommission -- under each ansible-core minor of requires_ansible."""
    bin_dir = VENV_BIN if core == "2.19" else os.path.join(CORE218, "bin")
    if not os.path.exists(os.path.join(bin_dir, "ansible-playbook")):
        pytest.skip("no ansible-core %s virtualenv at %s (make venv-core2.18)" % (core, CORE218))
    version = subprocess.run([os.path.join(bin_dir, "ansible"), "--version"], capture_output=True, text=True,
                             check=True, env=awx.clean_ansible_env()).stdout
    assert "[core %s." % core in version
    installed = tmp_path / "collections"
    awx.install_collection(tarball, str(installed), os.path.join(bin_dir, "ansible-galaxy"))
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(textwrap.dedent("""\
        all:
          vars:
            ansible_connection: local
            ansible_python_interpreter: %s
            knarr_node_registry: %s
            knarr_node_network: %s
            knarr_node_subnet: 172.27.0.0/24
            knarr_node_provisioner_endpoint: 172.27.0.1:9040
            knarr_node_boot_timeout: 30
          children:
            knarr_nodes:
              hosts:
                pkg-a: {knarr_node_location: lab}
                pkg-b: {knarr_node_location: lab, knarr_node_ip: 172.27.0.50}
        """ % (os.path.join(bin_dir, "python"), tmp_path / "state" / "fleet.db", NETWORK)))
    env = awx.clean_ansible_env(ANSIBLE_COLLECTIONS_PATH=str(installed), HOME=str(tmp_path), ANSIBLE_NOCOLOR="1",
                                ANSIBLE_FORCE_COLOR="0")

    def play(name):
        proc = subprocess.run([os.path.join(bin_dir, "ansible-playbook"), "-i", str(inventory), "fenrir.fleet." + name],
                              cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert "does not support Ansible version" not in proc.stderr, proc.stderr  # requires_ansible covers it
        return _recap(proc.stdout)

    remove_leftovers(PREFIX, NETWORK)
    try:
        first = play("provision")
        assert set(first) == {"pkg-a", "pkg-b"} and all(ch > 0 and failed == 0 for ch, failed in first.values())
        mine = {c.labels["fenrir.fleet.label"]: c for c in CLIENT.containers.list(
            filters={"label": "fenrir.fleet.role=knarr-node"}) if c.labels.get("fenrir.fleet.label", "").startswith(PREFIX)}
        assert sorted(mine) == ["pkg-a", "pkg-b"]
        assert mine["pkg-b"].attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"] == "172.27.0.50"
        assert all(changed == 0 for changed, dummy in play("provision").values())
        gone = play("decommission")
        assert all(ch > 0 and failed == 0 for ch, failed in gone.values())
        assert not [c for c in CLIENT.containers.list(all=True, filters={"label": "fenrir.fleet.role=knarr-node"})
                    if c.labels.get("fenrir.fleet.label", "").startswith(PREFIX)]
    finally:
        remove_leftovers(PREFIX, NETWORK)
