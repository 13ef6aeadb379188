#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: role_settings
short_description: A role's variables, as Ansible resolved them for this host, in one result
version_added: 0.4.0
description:
  - Collects every variable whose name starts with O(prefix) -- a role's public variables, such as C(knarr_node_*)
    -- from the variables Ansible computed for this host and this task (role defaults, inventory group and host
    variables, play and role variables, role parameters, extra vars; Ansible's own order of precedence), renders
    each, and returns them as RV(settings), their names without the prefix.
  - What C(ansible.builtin.set_fact) with the C(ansible.builtin.varnames) and C(ansible.builtin.vars) lookups
    would gather, without compiling that template on every host. Register the result; a run_once task then reads
    every host's settings from C(hostvars) with the C(extract) filter, one plan for the whole play.
  - The collection's roles C(fenrir.fleet.knarr_node) and C(fenrir.fleet.tenants) start with it.
  - Runs on the controller, an action plugin; nothing is sent to the host.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.attributes
  - fenrir.fleet.attributes.READ_ONLY
options:
  prefix:
    description: Variables whose name starts with this are gathered (the role's prefix, for example V(knarr_node_)).
    type: str
    required: true
  exclude:
    description: Names of variables (prefix included) left out, for example a role's own output.
    type: list
    elements: str
    default: []
notes:
  - The settings are returned to be registered, not set as facts. The facts a module or action returns (all but
    C(ansible.builtin.set_fact)'s) go into the fact cache, which with fact caching on -- as AWX runs jobs -- is on
    disk; a registered result is not.
  - The result holds the variables' values as they are, secrets included; give the task C(no_log) when any of them
    may be one (the registered variable keeps the values, what is shown does not).
  - A value that cannot be rendered (an undefined variable in it) fails the task naming the variable.
"""

EXAMPLES = r"""
- name: Each host's node settings, as Ansible resolves them for that host
  fenrir.fleet.role_settings:
    prefix: knarr_node_
    exclude: [knarr_node_results]
  register: _knarr_node_gathered
  no_log: true  # node identities

- name: Every host's node label, once for the play
  ansible.builtin.debug:
    msg: "{{ ansible_play_hosts | map('extract', hostvars, ['_knarr_node_gathered', 'settings', 'label']) | list }}"
  run_once: true
"""

RETURN = r"""
settings:
  description: The gathered variables, by name without O(prefix).
  returned: success
  type: dict
  sample:
    label: alpha
    memory: 256m
    state: present
"""
