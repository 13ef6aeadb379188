#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_status
short_description: Compare the fleet registry with the node containers on the Docker engine (drift)
version_added: 0.1.0
description:
  - Reads the fleet registry (O(registry), read-only) and, in one call each, lists the containers on the engine and
    inspects O(network); the cost does not grow with the number of nodes.
  - A node's container is one labelled for this registry (its C(fenrir.fleet.registry) label is this registry's
    absolute path) whose C(fenrir.fleet.label) label is the node's label, or an unlabelled one (as the original
    fleet-provision-docker-lite skill made them) named like the node, its C(server_id), else C(fenrir-<label>).
    Containers labelled for another registry are never this registry's, even when named like one of its nodes;
    other fleets may share the engine.
  - For every active node (any status but C(destroyed)) it reports what differs, as a list of strings in
    RV(nodes[].drift), empty when the node is in sync.
  - V(status provisioning) and V(status failed) when the registry says so;
    V(stale provisioning) when the record is still C(provisioning), unchanged for more than O(stale_after)
    seconds, and the node has no running container (a provisioning run killed and never re-run; the record
    still holds its address);
    V(container missing) when no container is the node's;
    V(stopped) when the container is not running;
    V(address differs) when the container's address on O(network) is not the registry's (or it is not on O(network));
    V(container id differs) when the container is not the one the registry recorded (recreated behind its back).
  - With O(probe=true), each running node is asked for its status and its echo skill at its container's address;
    V(not answering) when it does not answer within O(probe_timeout), V(wrong identity) when it answers with
    another node id than the registry's.
  - Containers of this registry that are not an active node's are reported as entries of their own with
    V(not in registry) (for example the container of a destroyed node), and so are unlabelled C(fenrir-*)
    containers on O(network) that no node claims; a second container for the same node as V(duplicate container).
  - Changes nothing, neither the registry nor Docker, unless O(release_stale=true).
  - With O(engines) (a fleet over Docker hosts, as M(fenrir.fleet.fleet_placement) O(fenrir.fleet.fleet_placement#module:state=query)
    returns them) every engine is asked at once, each node against the containers of its own host; a node whose host
    cannot be asked is V(host unreachable), and RV(hosts) lists every Docker host beside its nodes. Nodes on a host are
    probed where they answer (the host's address and their port).
  - With O(inventory) (every label of the inventory) a live node the inventory no longer has is V(not in inventory)
    (unless the inventory holds none of the registry's nodes, as an inventory of another fleet would).
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.docker
  - fenrir.fleet.registry
  - fenrir.fleet.engines
  - fenrir.fleet.attributes
  - fenrir.fleet.attributes.actiongroup_docker
options:
  inventory:
    description: Every node label of the inventory; a live node of the registry that is not among them is V(not in inventory).
    type: list
    elements: str
  network:
    description: The fleet network the nodes' addresses are on.
    type: str
    default: fenrir-fleet
  probe:
    description:
      - Also ask every running node for its status and echo (proof of life), signed with the registry's provisioner
        identity (which needs the registry's key, see O(key_file)); a registry without one (or without its key at
        hand) is probed with a throw-away identity.
    type: bool
    default: false
  port:
    description: The knarr node port probed with O(probe=true).
    type: int
    default: 9010
    aliases: [node_port]
  probe_timeout:
    description: Seconds each probe may take.
    type: float
    default: 2.0
  stale_after:
    description:
      - Seconds a C(provisioning) record may stay unchanged (its C(updated_at)) without a running container
        before it is reported as V(stale provisioning).
      - Keep it well above the longest provisioning run, so a run still at work is never taken for a dead one.
    type: float
    default: 600
  release_stale:
    description:
      - Mark every record reported as V(stale provisioning) C(failed), with a reason, and free its address,
        in one registry transaction that appends an audit entry per record. Exactly those records change; a
        record changed meanwhile (a run picked it up) is left alone. The next provisioning run retries a
        failed node.
      - Docker is never touched; a stopped container of a released node stays where it is.
      - RV(nodes) then shows the records as they are after the release (in check mode, as they would be).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Nothing is written in check mode; with O(release_stale=true) it reports what would be released.
  diff_mode:
    support: full
    details:
      - With O(release_stale=true), the status, reason, address and whether it is held, of every released record
        before and after.
  idempotent:
    support: full
  action_group:
    support: full
    membership:
      - fenrir.fleet.docker
seealso:
  - module: fenrir.fleet.fleet_audit
  - module: fenrir.fleet.fleet_registry
  - module: fenrir.fleet.knarr_container
"""

EXAMPLES = r"""
- name: Compare the registry with Docker
  fenrir.fleet.fleet_status:
    registry: /var/lib/fenrir/fleet.db
  register: fleet

- name: Fail when the fleet drifted
  ansible.builtin.assert:
    that: fleet.in_sync
    fail_msg: "{{ fleet.nodes | rejectattr('drift', 'equalto', []) | map(attribute='label') | join(', ') }} drifted"

- name: Also prove every running node alive
  fenrir.fleet.fleet_status:
    registry: /var/lib/fenrir/fleet.db
    probe: true

- name: Release the addresses of records a killed run left in provisioning more than an hour ago
  fenrir.fleet.fleet_status:
    registry: /var/lib/fenrir/fleet.db
    stale_after: 3600
    release_stale: true
  register: fleet

- name: Say which
  ansible.builtin.debug:
    msg: "released {{ fleet.released | join(', ') }}"
  when: fleet.released | length > 0
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
      description:
        - The node's label. For an extra container its C(fenrir.fleet.label) label, or for an unlabelled one its
          name without C(fenrir-).
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
    record_age:
      description: Seconds since the node's registry record last changed; V(null) for an extra container.
      type: int
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
    matched_by:
      description:
        - How the container was found. V(label) when it is labelled for this registry, V(name) when it carries no
          registry label and was found by its name (a container of the original skill); V(null) when missing.
      type: str
    drift:
      description: What differs; empty when the node is in sync.
      type: list
      elements: str
    probe_error:
      description: Why the probe failed (with O(probe=true)); V(null) otherwise.
      type: str
    image:
      description: The image the node runs, as the registry recorded it (M(fenrir.fleet.knarr_container), rolling
        upgrades), else as the container listing says; V(null) when unknown.
      type: str
    image_id:
      description: That image's id (C(sha256:...)).
      type: str
    previous_image:
      description: The image the node ran before its last image change; V(null) when it never changed.
      type: str
    docker_host:
      description: The engine the node lives on (a Docker host of the registry, or C(local)).
      type: str
    network_mode:
      description: C(bridge) or C(host).
      type: str
    port:
      description: The node's port on its Docker host (published node port, or host network); V(null) on the local engine.
      type: int
    endpoint:
      description: Where a node on a Docker host answers, C(host address:port).
      type: str
  sample:
    - label: alpha
      server_id: fenrir-alpha
      node_id: c6869abc...
      registry_status: online
      ip: 172.21.0.10
      record_age: 5302
      container_name: fenrir-alpha
      container_id: 7179bb02...
      container_ip: 172.21.0.10
      container_state: running
      matched_by: label
      drift: []
      probe_error: null
    - label: beta
      server_id: fenrir-beta
      node_id: 85186cf6...
      registry_status: online
      ip: 172.21.0.11
      record_age: 5298
      container_name: null
      container_id: null
      container_ip: null
      container_state: null
      matched_by: null
      drift: [container missing]
      probe_error: null
in_sync:
  description: Whether no entry shows any drift.
  returned: success
  type: bool
  sample: false
images:
  description: How many of the registry's nodes run each image (C(-) when unknown).
  returned: always
  type: dict
  sample: {"knarr-cluster-node:0.57": 48, "knarr-cluster-node:0.56": 2}
summary:
  description:
    - Counts. C(nodes) active registry nodes checked, C(containers) containers of this registry seen, C(ok) entries
      in sync, C(drifted) entries with drift, and one count per kind of drift (spaces as underscores, for example
      C(container_missing), C(address_differs), C(stale_provisioning), C(not_in_registry)).
  returned: success
  type: dict
  sample: {nodes: 3, containers: 2, ok: 2, drifted: 1, container_missing: 1, stopped: 0, address_differs: 0}
provisioner_node_id:
  description: The node id of the provisioner identity the probes were signed with; null for a throw-away one.
  returned: when O(probe=true)
  type: str
released:
  description:
    - Labels of the records marked failed and freed by O(release_stale=true) (in check mode, that would be);
      empty otherwise.
  returned: success
  type: list
  elements: str
  sample: [delta]
diff:
  description: With O(release_stale=true), each released record before and after.
  returned: when O(release_stale=true)
  type: dict
  contains:
    before:
      description: Per label, C(status), C(reason), C(ip) and C(address_held) before the release.
      type: dict
    after:
      description: The same after the release.
      type: dict
  sample:
    before: {delta: {status: provisioning, reason: null, ip: 172.21.0.13, address_held: true}}
    after: {delta: {status: failed, reason: "stale provisioning: unchanged for 4210 s ...", ip: 172.21.0.13,
                    address_held: false}}
hosts:
  description:
    - With O(engines), every Docker host of the registry (not decommissioned) beside its nodes -- its record (name,
      address, endpoint, subnet, status, engine version, certificate expiry, memory, node limit, reason), C(nodes) (its
      live nodes), C(engine) (C(answered), C(unreachable), C(not asked)) and C(engine_problem).
  returned: when O(engines) is given
  type: list
  elements: dict
registry:
  description: The registry (a file's absolute path).
  returned: success
  type: str
network:
  description: The network whose addresses were compared.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_status
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    run_module(AnsibleModule(supports_check_mode=True, **fleet_status.ARGUMENT_SPEC), fleet_status)


if __name__ == "__main__":
    main()
