#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_placement
short_description: Place knarr nodes on the fleet's Docker hosts and hold their addresses, ports and identities
version_added: 0.3.0
description:
  - Decides, for every node of O(nodes), which Docker host it lives on, and holds in the fleet registry what it needs
    there, in one registry transaction with every node's identity (as M(fenrir.fleet.fleet_registry) does).
  - "Placement: a node that names its host (O(nodes[].docker_host): a host of the registry, or C(local) for the
    controller's engine) goes there; an unnamed node keeps the host its record has (placement is sticky, a re-run
    never moves a node by itself); a new unnamed node goes to the C(connected) host with the most free memory
    (declared node memory against the host's memory), under the host's node limit (C(max_nodes))."
  - "While the registry holds no Docker host (and no node names one), nothing is placed and nothing is written:
    RV(hosts_mode) is false and the single-engine flow applies unchanged."
  - "What a node holds: in C(bridge) mode an address of its host's C(fenrir-fleet) /24 (the local engine keeps the
    classic pool O(subnet)), unique across the fleet; on a managed host also a port of the host's pool
    (O(port_start)-O(port_end)), on which its node port is published on the host's address and advertised. In
    C(host) mode (managed hosts only) a block of three ports (node, sidecar, cockpit) of the host's pool instead of
    an address; two nodes on one host never share a port."
  - A node whose host (or network mode) changes is moved (RV(moves)), with a new address and port and the same label,
    identity and node id. M(fenrir.fleet.knarr_container) moves its container and node.db.
  - O(state=query) reads where nodes live (O(labels), or all) and the engines to reach them, without the registry's key.
  - With O(inventory) the nodes of the registry that are not in it are listed (RV(not_in_inventory)); with O(prune)
    they are also returned in RV(prune), for the caller to decommission.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.registry
  - fenrir.fleet.registry.pool
  - fenrir.fleet.attributes
options:
  state:
    description: C(present) places and holds; C(query) only reads.
    type: str
    choices: [present, query]
    default: present
  nodes:
    description: The nodes to place (O(state=present)).
    type: list
    elements: dict
    default: []
    suboptions:
      label:
        description: The node's label.
        type: str
        required: true
      docker_host:
        description: The node's Docker host, or C(local). Unset keeps the record's host, else placement by capacity.
        type: str
      network_mode:
        description: C(bridge) or C(host).
        type: str
        choices: [bridge, host]
        default: bridge
      memory:
        description: The node's declared memory (what placement counts against the host's).
        type: raw
        default: 256m
      port:
        description: The node's port on the local engine (for the C(advertise) of RV(nodes)).
        type: int
        default: 9010
      image:
        description: The node's image (listed per engine in RV(engines)).
        type: str
        default: knarr-cluster-node:latest
      ip:
        description: A pinned address inside its host's subnet (bridge only).
        type: str
      location:
        description: Free-text location, recorded.
        type: str
      nonce:
        description: Nonce of the payload the node came from, recorded.
        type: str
      node_db_b64:
        description: A node.db (base64) whose identity the node must use.
        type: str
  labels:
    description: O(state=query) -- the nodes to look up. Default every live node.
    type: list
    elements: str
  absent:
    description: Labels of nodes decommissioned in the same run (their hosts are included in RV(engines)).
    type: list
    elements: str
    default: []
  inventory:
    description: Every label of the inventory, to find the registry's nodes that are no longer in it.
    type: list
    elements: str
  prune:
    description: Return the nodes that are not in O(inventory) in RV(prune), to be decommissioned.
    type: bool
    default: false
  tls_dir:
    description:
      - The controller's client bundle for the managed hosts (C(ca.pem), C(cert.pem), C(key.pem)) -- the
        C(controller/) directory of the docker_host role's C(docker_host_ca_dir).
    type: path
  port_start:
    description: First port of each managed host's port pool (published node ports, host-network nodes).
    type: int
    default: 20000
  port_end:
    description: Last port of each managed host's port pool.
    type: int
    default: 29999
  engine_timeout:
    description: Seconds for each API call to a managed host (in RV(engines)).
    type: int
    default: 60
  identity:
    description: Make sure every node has an identity (as M(fenrir.fleet.fleet_registry)).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details:
      - Plans on a private copy of the registry; nothing is written.
  diff_mode:
    support: full
  idempotent:
    support: full
requirements:
  - cryptography
seealso:
  - module: fenrir.fleet.fleet_host
  - module: fenrir.fleet.knarr_container
"""

EXAMPLES = r"""
- name: Place the fleet
  fenrir.fleet.fleet_placement:
    registry: /var/lib/fenrir/fleet.db
    tls_dir: /srv/fenrir/pki/controller
    nodes:
      - {label: alpha, docker_host: docker1.example.net}
      - {label: beta}                                   # by capacity
      - {label: gamma, docker_host: docker2.example.net, network_mode: host}
  register: placement

- name: Where the nodes live (read only)
  fenrir.fleet.fleet_placement:
    registry: /var/lib/fenrir/fleet.db
    tls_dir: /srv/fenrir/pki/controller
    state: query
"""

RETURN = r"""
hosts_mode:
  description: Whether the fleet uses Docker hosts; false means nothing was placed (the single-engine flow applies).
  returned: always
  type: bool
nodes:
  description: Every node's record after placement, with C(engine) (its host, or C(local)) and C(advertise) (C(host:port)).
  returned: always
  type: list
  elements: dict
  sample: [{label: alpha, docker_host: docker1.example.net, network_mode: bridge, ip: 172.21.1.10, port: 20000,
            engine: docker1.example.net, advertise: "10.44.0.21:20000", node_id: "3f9c...", status: provisioning}]
engines:
  description: What the Docker-facing modules need to reach every engine involved (their O(fenrir.fleet.knarr_container#module:engines)).
  returned: always
  type: list
  elements: dict
moves:
  description: "Nodes whose host changed, C({label: {from, to}})."
  returned: when O(state=present)
  type: dict
hosts:
  description: The registry's Docker hosts.
  returned: always
  type: list
  elements: dict
not_in_inventory:
  description: Live nodes of the registry that are not in O(inventory).
  returned: always
  type: list
  elements: str
prune:
  description: The nodes to decommission (O(prune)).
  returned: when O(state=present)
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_placement
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    run_module(AnsibleModule(supports_check_mode=True, **fleet_placement.ARGUMENT_SPEC), fleet_placement)


if __name__ == "__main__":
    main()
