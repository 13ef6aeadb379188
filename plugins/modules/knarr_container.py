#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: knarr_container
short_description: Create, configure, start and prove alive many knarr node containers at once
version_added: 0.1.0
description:
  - For every entry of O(nodes), makes the container C(fenrir-<label>) match what is wanted and proves the node alive.
  - The address and the identity come from the fleet registry (O(registry)), reserved beforehand by
    M(fenrir.fleet.fleet_node); the identity is written into the container as C(/opt/knarr/node.db),
    with C(knarr.toml) and C(skills/echo.py).
  - The container gets the fixed address on the fleet network, a hard memory limit (no swap), a PID limit,
    the restart policy and labels tying it to the registry. No port is published.
  - A container whose image, network, address, limits or restart policy differ is recreated; files whose content
    differs are put (for C(node.db), when the identity inside differs) and a running node is restarted;
    a stopped one is started. Then the module waits until each node answers its status with the expected
    node id and its echo skill returns what it was sent.
  - Nodes are reconciled in parallel over the Docker API (O(parallelism) at a time).
  - A node that fails after this run touched it has its container removed and its record marked C(failed) with the
    reason; a later run retries it. Nodes that succeed are recorded C(running) with their container id.
author:
  - fenrir.fleet maintainers
extends_documentation_fragment:
  - fenrir.fleet.docker
options:
  registry:
    description: The fleet registry (C(fleet.db)) holding each node's address and identity.
    type: path
    required: true
  key_file:
    description: The registry's key file. Default C(fleet.key) beside O(registry).
    type: path
  nodes:
    description:
      - One entry per node. Keys are the knarr_node role's node settings without the C(knarr_node_) prefix
        (C(label), C(image), C(network), C(memory), C(pids_limit), C(restart_policy), C(node_port), C(echo_source),
        ...), C(knarr_toml), the rendered configuration, and optionally C(ip), the address the node holds
        (checked against the registry; in check mode it stands in for an address not reserved yet) and
        C(node_id) (in check mode, the node id shown for an identity not stored yet).
      - Required with O(state=started) and O(state=probed). With O(state=absent) only C(label) is used.
    type: list
    elements: dict
  labels:
    description:
      - The labels of the nodes to decommission (O(state=absent) only), instead of O(nodes).
    type: list
    elements: str
  state:
    description:
      - V(started) reconciles and starts the containers (and waits, see O(wait)).
      - V(probed) changes nothing and only waits until every node answers (the wait-for-boot stage).
      - V(absent) decommissions the nodes. It removes their containers (in parallel), then marks the record of
        every node whose container is gone C(destroyed) and frees its address, in one registry transaction.
        A node whose container could not be removed keeps its record and is reported in RV(failed_nodes).
    type: str
    choices: [started, probed, absent]
    default: started
  parallelism:
    description: How many nodes are worked on at once.
    type: int
    default: 8
  wait:
    description: Wait until each node answers (status and echo) before returning.
    type: bool
    default: true
  boot_timeout:
    description: Seconds each node has to answer.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Plans every node (create, recreate, files, start) without changing Docker or the registry.
  diff_mode:
    support: full
    description: Shows the container settings and file contents before and after; C(node.db) only as its node id.
  idempotent:
    support: full
notes:
  - The module fails when any node fails, after handling all of them; RV(failed_nodes) names them.
seealso:
  - module: fenrir.fleet.fleet_node
  - module: fenrir.fleet.node_identity
"""

EXAMPLES = r"""
- name: Bring up two nodes
  fenrir.fleet.knarr_container:
    registry: /var/lib/fenrir/fleet.db
    nodes:
      - label: alpha
        knarr_toml: "{{ alpha_toml }}"
      - label: beta
        knarr_toml: "{{ beta_toml }}"
        memory: 512m

- name: Decommission them (containers removed, records destroyed, addresses freed)
  fenrir.fleet.knarr_container:
    registry: /var/lib/fenrir/fleet.db
    labels: [alpha, beta]
    state: absent
"""

RETURN = r"""
nodes:
  description: One result per node.
  returned: always
  type: list
  elements: dict
  sample:
    - label: alpha
      server_id: fenrir-alpha
      ip: 172.21.0.10
      node_id: 9b1d...
      container_id: 4c5e...
      actions: [create, put echo.py, knarr.toml, node.db, start]
      changed: true
      failed: false
      reason: null
      state: running
      boot_seconds: 0.41
      result: {status: ok, ip: 172.21.0.10, server_id: fenrir-alpha, provider: docker}
  contains:
    result:
      description: The node's result in the seed's contract (C(status) ok, dry_run or error; C(ip); C(server_id);
        C(provider)). With O(state=absent), C(ip) is the address the node held.
      type: dict
      returned: always
    removed:
      description: Whether the node's container was (or, in check mode, would be) removed.
      type: bool
      returned: O(state=absent)
    destroyed:
      description: Whether the node's record was (or would be) marked destroyed and its address freed.
      type: bool
      returned: O(state=absent)
failed_nodes:
  description: Labels of the nodes that failed.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils.module_specs import SPECS, run_module


def main():
    # On the controller the action plugin of the same name runs this in-process; elsewhere this runs.
    run_module(AnsibleModule(supports_check_mode=True, **SPECS["knarr_container"]), "knarr_container")


if __name__ == "__main__":
    main()
