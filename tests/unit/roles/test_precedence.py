"""Every host's knarr_node settings are what Ansible's own variable precedence gives that host.

A real ansible-playbook run of the role's preflight (no Docker, no registry) over three hosts, with settings
from role defaults, inventory group and host vars, play vars, the role's import vars and extra vars, the first
host (the one run_once tasks run on) differing from the others. Expected values follow Ansible's documented
precedence; inventory-level values are also checked against ``ansible-inventory --host``.
"""

import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.path.dirname(sys.executable)

INVENTORY = """
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    knarr_node_memory: 128m          # inventory group_vars/all
  children:
    knarr_nodes:
      vars:
        knarr_node_location: grp     # inventory group vars
      hosts:
        h1:
          knarr_node_memory: 512m    # the run_once host: the same value the play gives the role
          knarr_node_jurisdiction: h1-j
        h2:
          knarr_node_label: beta
          knarr_node_memory: 64m
          knarr_node_pids_limit: 40
        h3:
          knarr_node_location: h3-loc
"""

PLAYBOOK = """
- name: Preflight only
  hosts: knarr_nodes
  gather_facts: false
  vars:
    knarr_node_jurisdiction: play-j    # play vars beat inventory host vars
  tasks:
    - name: The role's preflight, with role vars
      ansible.builtin.import_role:
        name: fenrir.fleet.knarr_node
        tasks_from: preflight.yml
      vars:
        knarr_node_memory: 512m        # the role's import vars beat host vars

    - name: What Ansible gives each host outside the role
      ansible.builtin.copy:
        content: "{{ {'location': knarr_node_location, 'jurisdiction': knarr_node_jurisdiction,
                      'pids_limit': knarr_node_pids_limit | default(None)} | to_json }}"
        dest: "{{ out }}/ansible-{{ inventory_hostname }}.json"
        mode: "0644"

    - name: The plan
      ansible.builtin.copy:
        content: "{{ _knarr_node_plan.present | to_json }}"
        dest: "{{ out }}/plan.json"
        mode: "0644"
      run_once: true
"""


def test_each_host_gets_what_ansible_gives_it(tmp_path):
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "play.yml").write_text(textwrap.dedent(PLAYBOOK))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                           str(tmp_path / "play.yml"), "-e", "out=%s" % tmp_path, "-e", "knarr_node_pids_limit=77"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = {n["label"]: n for n in json.loads((tmp_path / "plan.json").read_text())}
    assert set(plan) == {"h1", "beta", "h3"}
    # Role import vars beat host vars: every host gets 512m, not only the run_once host whose own value it is.
    assert {label: n["memory"] for label, n in plan.items()} == {"h1": "512m", "beta": "512m", "h3": "512m"}
    # Extra vars beat everything, host vars included.
    assert {int(n["pids_limit"]) for n in plan.values()} == {77}  # key=value extra vars are strings
    # Play vars beat inventory host vars (the first host's own h1-j included).
    assert {n["jurisdiction"] for n in plan.values()} == {"play-j"}
    # Inventory host vars beat group vars; unset settings stay unset (the module's default applies).
    assert {label: n["location"] for label, n in plan.items()} == {"h1": "grp", "beta": "grp", "h3": "h3-loc"}
    assert all("cockpit_port" not in n for n in plan.values())
    # The same values as Ansible gives each host itself.
    for host, label in (("h1", "h1"), ("h2", "beta"), ("h3", "h3")):
        seen = json.loads((tmp_path / ("ansible-%s.json" % host)).read_text())
        assert seen["location"] == plan[label]["location"] and seen["jurisdiction"] == plan[label]["jurisdiction"]
        assert int(seen["pids_limit"]) == int(plan[label]["pids_limit"])
        inventory = json.loads(subprocess.run(
            [os.path.join(BIN, "ansible-inventory"), "-i", str(tmp_path / "hosts.yml"), "--host", host],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout)
        assert inventory["knarr_node_location"] == plan[label]["location"]
