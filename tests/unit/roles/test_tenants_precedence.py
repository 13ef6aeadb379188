"""Every host's tenants settings are what Ansible's own variable precedence gives that host.

A real ansible-playbook run of the tenants role's preflight (no Docker, no registry) over three tenant hosts and
the controller, with settings from role defaults, inventory group vars (all, and the tenants group) and host vars,
play vars, the role's import vars and extra vars; the first host of the play (the one run_once tasks run on) is a
tenant with settings of its own. Expected values follow Ansible's documented precedence; inventory-level values are
also checked against ``ansible-inventory --host``. Then a play setting given to one host only is refused, naming
the variable and the hosts.
"""

import json
import os
import subprocess
import sys
import textwrap

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.path.dirname(sys.executable)


def spec(memory):
    return {"containers": [{"name": "app", "image": "fenrir-tenant-http:latest"}],
            "resources": {"cpu": 250, "memory": memory}}


def inventory(t2_extra=None):
    return {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                 "tenants_registry": "/srv/from-group-all/fleet.db"},                 # inventory group_vars/all
        "hosts": {"localhost": {}},
        "children": {"tenants": {
            "vars": {"tenants_spec": spec(32),                                         # inventory group vars
                     "tenants_docker": {"docker_host": "tcp://127.0.0.1:2375"}},
            "hosts": {
                # The first host of the play: its own engine (host vars beat group vars) and its own prefix
                # (play vars beat host vars: it gets the play's, like every host).
                "t1": {"tenants_docker": {"docker_host": "tcp://127.0.0.1:2376"}, "tenants_prefix": "from-host"},
                "t2": dict({"tenants_spec": spec(128)}, **(t2_extra or {})),
                "t3": {},
            }}}}}


PLAYBOOK = """
- name: Preflight only
  hosts: tenants:localhost
  gather_facts: false
  vars:
    tenants_prefix: ttest                # play vars beat inventory host vars
  tasks:
    - name: The role's preflight, with role vars
      ansible.builtin.import_role:
        name: fenrir.fleet.tenants
        tasks_from: preflight.yml
      vars:
        tenants_list:                    # the role's import vars: the play's tenants
          - tenant_id: listed
            containers: [{name: app, image: "fenrir-tenant-http:latest"}]
            resources: {cpu: 100, memory: 16}

    - name: What Ansible gives each host outside the role
      ansible.builtin.copy:
        content: "{{ {'docker': tenants_docker | default({}), 'spec': tenants_spec | default(None),
                      'prefix': tenants_prefix, 'settle': tenants_start_settle} | to_json }}"
        dest: "{{ out }}/ansible-{{ inventory_hostname }}.json"
        mode: "0644"

    - name: The plan
      ansible.builtin.copy:
        content: "{{ _tenants_plan | to_json }}"
        dest: "{{ out }}/plan.json"
        mode: "0644"
      run_once: true
"""


def run(tmp_path, hosts):
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (tmp_path / "play.yml").write_text(textwrap.dedent(PLAYBOOK))
    # Results as JSON: one line per message, as every ansible-core version prints it (YAML folds long lines).
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json")
    return subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                           str(tmp_path / "play.yml"), "-e", "out=%s" % tmp_path, "-e", "tenants_start_settle=0.5"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_each_host_gets_what_ansible_gives_it_and_play_settings_agree(tmp_path):
    proc = run(tmp_path, inventory())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    engines = {b["engine"]: {s["tenant_id"]: s["resources"]["memory"] for s in b["present"]} for b in plan["batches"]}
    # Host vars beat group vars (t1's engine, t2's spec); group vars reach the others; the first host's own engine
    # stays its own, and the play's tenants (role vars) take the play's engine: the controller's, the role default.
    assert engines == {"tcp://127.0.0.1:2376": {"t1": 32}, "tcp://127.0.0.1:2375": {"t2": 128, "t3": 32},
                       "default engine": {"listed": 16}}
    assert plan["docker"] == {}
    # Play vars beat host vars (t1's own prefix included), so every host has the play's: no disagreement.
    # Extra vars beat everything; group_vars/all reach every host; role defaults fill in the rest; the module's
    # options left unset stay unset (the module's defaults apply).
    assert plan["play"] == {"prefix": "ttest", "start_settle": "0.5", "registry": "/srv/from-group-all/fleet.db",
                            "group": "tenants", "mode": "converge", "output": "table"}
    # The same values as Ansible gives each host itself.
    for host, engine in (("t1", "tcp://127.0.0.1:2376"), ("t2", "tcp://127.0.0.1:2375"), ("t3", "tcp://127.0.0.1:2375")):
        seen = json.loads((tmp_path / ("ansible-%s.json" % host)).read_text())
        assert seen["docker"]["docker_host"] == engine and seen["prefix"] == "ttest" and seen["settle"] == "0.5"
        assert seen["spec"]["resources"]["memory"] == engines[engine][host]
        shown = json.loads(subprocess.run(
            [os.path.join(BIN, "ansible-inventory"), "-i", str(tmp_path / "hosts.yml"), "--host", host],
            cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        assert shown["tenants_docker"]["docker_host"] == engine


def test_a_play_setting_given_to_one_host_is_refused_naming_it(tmp_path):
    proc = run(tmp_path, inventory({"tenants_bind_address": "127.0.0.2"}))
    assert proc.returncode != 0
    assert "variable tenants_bind_address: a play setting, read once for the whole play, differs" in proc.stdout
    assert "host t2 has '127.0.0.2'" in proc.stdout and "host t1 has None" in proc.stdout
    assert not (tmp_path / "plan.json").exists()
