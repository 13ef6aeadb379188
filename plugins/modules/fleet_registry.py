#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_registry
short_description: Reserve addresses and keep node records in the fleet registry (SQLite or PostgreSQL)
version_added: 0.1.0
description:
  - Keeps the node records of the fleet registry O(registry), an SQLite file or a PostgreSQL database, created on
    first use.
  - Renamed from C(fenrir.fleet.fleet_node) (still accepted, deprecated).
  - For a O(label) (or every entry of O(nodes)) with O(state=present), reserves an address from the pool in the
    same transaction that picks it; the node keeps that address on every later run. A pinned O(ip) is honoured,
    or refused with the reason (outside the subnet, the gateway, held by another node).
  - Keeps each node's identity (an Ed25519 seed) encrypted in the registry with the key in O(key_file). A given
    O(node_db_b64) is validated and stored; otherwise the stored one is kept, or a fresh one is made.
  - Records C(server_id), C(provider), C(location), C(nonce), C(node_id), C(container_id), C(status) and timestamps.
    O(state=absent) marks the node C(destroyed) and frees its address.
  - A node adopted from an older registry (it has a node id but no identity here) keeps its identity, and none is made
    for it; M(fenrir.fleet.knarr_container) takes it from the node's container.
  - Any number of processes may run this against one registry at once; they never share an address.
    Every change is appended to the registry's keyed audit chain in the same transaction (see
    M(fenrir.fleet.fleet_audit)).
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.registry
  - fenrir.fleet.registry.pool
  - fenrir.fleet.attributes
options:
  label:
    description: The node's label. Its container is C(fenrir-<label>). Use O(nodes) for many nodes in one call.
    type: str
  nodes:
    description: Many nodes in one transaction; each entry takes the per-node options of the module.
    type: list
    elements: dict
    suboptions:
      label:
        description: The node's label.
        type: str
        required: true
      ip:
        description: Pinned address, as O(ip).
        type: str
      location:
        description: As O(location).
        type: str
      nonce:
        description: As O(nonce).
        type: str
      server_id:
        description: As O(server_id).
        type: str
      provider:
        description: As O(provider).
        type: str
        default: docker
      node_db_b64:
        description: As O(node_db_b64). Secret.
        type: str
      status:
        description: As O(status).
        type: str
        choices: [provisioning, running, online, failed]
      reason:
        description: As O(reason).
        type: str
      node_id:
        description: As O(node_id).
        type: str
      container_id:
        description: As O(container_id).
        type: str
  labels:
    description: Many existing nodes in one transaction, given by label; O(status) and O(reason) apply to each.
    type: list
    elements: str
  state:
    description: V(present) reserves and updates; V(absent) marks destroyed and frees the address.
    type: str
    choices: [present, absent]
    default: present
  ip:
    description: Pinned address (must be a host address of O(subnet), not the gateway, not held by another node).
    type: str
  location:
    description: Where the node runs (free text, for grouping).
    type: str
  nonce:
    description: The nonce of the payload that created the node.
    type: str
  server_id:
    description: Container name. Default C(fenrir-<label>).
    type: str
  provider:
    description: Provider name.
    type: str
    default: docker
  node_db_b64:
    description: A knarr C(node.db) in base64 whose identity the node must use. Validated, stored encrypted, never returned.
    type: str
  identity:
    description: Make sure every node has an identity (a fresh one when none is stored or given).
    type: bool
    default: true
  status:
    description: Set the status.
    type: str
    choices: [provisioning, running, online, failed]
  reason:
    description: Why a node failed (with O(status=failed)).
    type: str
  node_id:
    description: The node id the node reported.
    type: str
  container_id:
    description: The node's container id.
    type: str
attributes:
  check_mode:
    support: full
    details:
      - Reports the address that would be taken; writes nothing (not even a new registry file).
  diff_mode:
    support: full
  idempotent:
    support: full
notes:
  - Secrets (node identities) are never returned and are kept encrypted in the registry.
requirements:
  - cryptography
seealso:
  - module: fenrir.fleet.knarr_container
  - module: fenrir.fleet.fleet_audit
"""

EXAMPLES = r"""
- name: Reserve an address for one node
  fenrir.fleet.fleet_registry:
    registry: /var/lib/fenrir/fleet.db
    label: alpha
    location: eu-north

- name: Reserve many nodes in one transaction
  fenrir.fleet.fleet_registry:
    registry: /var/lib/fenrir/fleet.db
    nodes:
      - label: alpha
      - label: beta
        ip: 172.21.0.50

- name: Mark a node online
  fenrir.fleet.fleet_registry:
    registry: /var/lib/fenrir/fleet.db
    label: alpha
    status: online

- name: Destroy a node's record and free its address
  fenrir.fleet.fleet_registry:
    registry: /var/lib/fenrir/fleet.db
    label: alpha
    state: absent
"""

RETURN = r"""
node:
  description: The record of O(label) (when O(label) was given).
  returned: success and O(label) given
  type: dict
  sample: {label: alpha, server_id: fenrir-alpha, ip: 172.21.0.10, status: provisioning, node_id: 3f0c...}
nodes:
  description: The records of every node handled, secrets left out.
  returned: success
  type: list
  elements: dict
pool:
  description: The pool allocated from.
  returned: success
  type: dict
  sample: {subnet: 172.21.0.0/24, gateway: 172.21.0.1, pool_start: 172.21.0.10, pool_end: 172.21.0.249}
registry:
  description: The registry (a file's absolute path).
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_registry
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    # On the controller, with a local connection, the action plugin of the same name runs this logic in the worker.
    run_module(AnsibleModule(supports_check_mode=True, **fleet_registry.ARGUMENT_SPEC), fleet_registry)


if __name__ == "__main__":
    main()
