#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: node_outcome
short_description: A node's outcome of the fleet-wide work, reported as its host's own result
version_added: 0.4.0
description:
  - The C(fenrir.fleet.knarr_node) role does its Docker and registry work once for all the play's hosts; then
    every host reports its own node with this action, so the play recap and AWX's host summaries list every node,
    and a node that failed is a failed host.
  - "The host's result is the node's: V(ok), V(changed), or failed with the reason (C(node <label>: <reason>));
    it carries the node's own result (status, address, node id, provider) as RV(node)."
  - Runs on the controller, an action plugin; nothing is sent to the host, nothing is changed.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.attributes
  - fenrir.fleet.attributes.READ_ONLY
options:
  outcome:
    description:
      - This host's node's entry of the C(fenrir.fleet.knarr_node_outcomes) filter - C(label), C(changed),
        C(failed), C(reason) and C(result).
      - Null or omitted, the node had no part in the run and the host is skipped.
    type: dict
notes:
  - Reports V(changed) only when the node was changed; it changes nothing itself, also not in check mode, where
    the outcome is what the run would do.
"""

EXAMPLES = r"""
- name: Every node's outcome, from the fleet-wide module results, once for the play
  ansible.builtin.set_fact:
    outcomes: "{{ [removed, started] | fenrir.fleet.knarr_node_outcomes }}"
  run_once: true

- name: The node's outcome, reported by its host
  fenrir.fleet.node_outcome:
    outcome: "{{ outcomes[knarr_node_label] | default(none) }}"
"""

RETURN = r"""
node:
  description: The node's result (as in C(knarr_node_results)); empty when the module gave none.
  returned: when the node had a part in the run
  type: dict
  sample:
    status: running
    ip: 172.21.0.10
    server_id: 7f1c0e5a2b
    provider: fenrir-alpha
msg:
  description: "C(node <label>: ok), C(node <label>: changed), or C(node <label>: <reason>) when it failed."
  returned: always
  type: str
  sample: "node alpha: ok"
"""
