#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_status
short_description: Compare the fleet registry with the node containers on the Docker engine (drift)
version_added: 0.1.0
description:
  - Reads the fleet registry (O(db), read-only) and lists the knarr node containers on the engine once
    (containers labelled C(fenrir.fleet.role=knarr-node)); only containers whose C(fenrir.fleet.registry) label is
    this registry's absolute path count. A container is a node's when its C(fenrir.fleet.label) label is the node's
    label (its name is normally C(fenrir-<label>), the node's C(server_id)).
  - For every active node (any status but C(destroyed)) it reports what differs, as a list of strings in
    RV(nodes[].drift), empty when the node is in sync.
  - V(status provisioning) and V(status failed) when the registry says so;
    V(container missing) when no container carries the node's label;
    V(stopped) when the container is not running;
    V(address differs) when the container's address on O(network) is not the registry's (or it is not on O(network));
    V(container id differs) when the container is not the one the registry recorded (recreated behind its back).
  - With O(probe=true), each running node is asked for its status and its echo skill at its container's address;
    V(not answering) when it does not answer within O(probe_timeout), V(wrong identity) when it answers with
    another node id than the registry's.
  - Containers of this registry that are not an active node are reported as entries of their own with
    V(not in registry) (for example the container of a destroyed node); a second container for the same node
    as V(duplicate container).
  - Changes nothing, neither the registry nor Docker.
author:
  - fenrir.fleet maintainers
extends_documentation_fragment:
  - fenrir.fleet.docker
options:
  db:
    description: Path of the registry, C(fleet.db). Read-only; it must exist and have the collection's schema version.
    type: path
    required: true
  network:
    description: The fleet network the nodes' addresses are on.
    type: str
    default: fenrir-fleet
  probe:
    description: Also ask every running node for its status and echo (proof of life).
    type: bool
    default: false
  node_port:
    description: The knarr node port probed with O(probe=true).
    type: int
    default: 9010
  probe_timeout:
    description: Seconds each probe may take.
    type: float
    default: 2.0
attributes:
  check_mode:
    support: full
    description: The module never changes anything; it runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
  action_group:
    description: Use C(group/fenrir.fleet.docker) in C(module_defaults) to set the Docker options.
    support: full
    membership:
      - fenrir.fleet.docker
seealso:
  - module: fenrir.fleet.fleet_audit
  - module: fenrir.fleet.knarr_container
"""

EXAMPLES = r"""
- name: Compare the registry with Docker
  fenrir.fleet.fleet_status:
    db: /var/lib/fenrir/fleet.db
  register: fleet

- name: Fail when the fleet drifted
  ansible.builtin.assert:
    that: fleet.in_sync
    fail_msg: "{{ fleet.nodes | rejectattr('drift', 'equalto', []) | map(attribute='label') | join(', ') }} drifted"

- name: Also prove every running node alive
  fenrir.fleet.fleet_status:
    db: /var/lib/fenrir/fleet.db
    probe: true
"""

RETURN = r"""
nodes:
  description:
    - One entry per active registry node, in address order, then one per container the registry does not know.
  returned: success
  type: list
  elements: dict
  contains:
    label:
      description: The node's label (for an extra container, its C(fenrir.fleet.label) label).
      type: str
    server_id:
      description: The node's server id (container name) in the registry.
      type: str
    node_id:
      description: The node id the registry holds; V(null) for an extra container.
      type: str
    registry_status:
      description: The node's status in the registry; V(null) for an extra container.
      type: str
    ip:
      description: The node's address in the registry; V(null) for an extra container.
      type: str
    container_name:
      description: Name of the node's container; V(null) when missing.
      type: str
    container_id:
      description: Id of the node's container; V(null) when missing.
      type: str
    container_ip:
      description: The container's address on O(network) (configured address when it is stopped); V(null) when unknown.
      type: str
    container_state:
      description: Docker state of the container (C(running), C(exited), C(created), ...); V(null) when missing.
      type: str
    drift:
      description: What differs; empty when the node is in sync.
      type: list
      elements: str
    probe_error:
      description: Why the probe failed (with O(probe=true)); V(null) otherwise.
      type: str
  sample:
    - label: alpha
      server_id: fenrir-alpha
      node_id: c6869abc...
      registry_status: online
      ip: 172.21.0.10
      container_name: fenrir-alpha
      container_id: 7179bb02...
      container_ip: 172.21.0.10
      container_state: running
      drift: []
      probe_error: null
    - label: beta
      server_id: fenrir-beta
      node_id: 85186cf6...
      registry_status: online
      ip: 172.21.0.11
      container_name: null
      container_id: null
      container_ip: null
      container_state: null
      drift: [container missing]
      probe_error: null
in_sync:
  description: Whether no entry shows any drift.
  returned: success
  type: bool
  sample: false
summary:
  description:
    - Counts. C(nodes) active registry nodes checked, C(containers) containers of this registry seen, C(ok) entries
      in sync, C(drifted) entries with drift, and one count per kind of drift (spaces as underscores, for example
      C(container_missing), C(address_differs), C(not_in_registry)).
  returned: success
  type: dict
  sample: {nodes: 3, containers: 2, ok: 2, drifted: 1, container_missing: 1, stopped: 0, address_differs: 0}
db:
  description: Absolute path of the registry.
  returned: success
  type: str
network:
  description: The network whose addresses were compared.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (
    docker_argument_spec, make_client, require_docker)
from ansible_collections.fenrir.fleet.plugins.module_utils.drift import DriftError, fleet_status


def main():
    module = AnsibleModule(
        argument_spec=docker_argument_spec(
            db=dict(type="path", required=True),
            network=dict(type="str", default="fenrir-fleet"),
            probe=dict(type="bool", default=False),
            node_port=dict(type="int", default=9010),
            probe_timeout=dict(type="float", default=2.0),
        ),
        supports_check_mode=True,
    )
    require_docker(module)
    try:
        result = fleet_status(module.params, make_client)
    except DriftError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
