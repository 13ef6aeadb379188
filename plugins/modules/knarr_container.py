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
    M(fenrir.fleet.fleet_registry); the identity is written into the container as C(/opt/knarr/node.db),
    with C(knarr.toml) (rendered here from the node's settings by a TOML writer) and C(skills/echo.py).
  - The container gets the fixed address on the fleet network, a hard memory limit (no swap), a PID limit, an
    optional CPU limit, the restart policy and labels tying it to the registry. No port is published.
  - Least privilege, whatever the settings - it runs as the node image's user C(10001:10001), with every Linux
    capability dropped (C(cap_drop=ALL), none added), C(no-new-privileges), and a C(json-file) log bounded to
    3 files of 10 MB. With O(nodes[].read_only) its root filesystem is read-only.
  - A container whose image, network, address, limits, restart policy or hardening differ is recreated, keeping
    the node's C(node.db); files whose content differs are put and a running node is restarted; a stopped one is
    started. A container whose C(node.db) holds another identity than the registry's (replaced behind its back) is
    made anew, so that nothing of that identity (the C(cert.pem)/C(key.pem) knarr made from it) is left.
  - Then the module waits until each node proves, in knarr's own signed protocol and signed with the provisioner's
    identity (O(provisioner_db_b64)), that it holds the registry's identity and its echo skill returns what it was
    sent.
  - Nodes are reconciled in parallel over the Docker API (O(parallelism) at a time).
  - With O(engines) the nodes live on several engines (the controller's and managed Docker hosts, where
    M(fenrir.fleet.fleet_placement) placed them), all worked on at once. On a managed host a bridge node's node port
    is published on the host's address and advertised there; a C(host) network node uses its ports of the host's pool.
    An engine that is unreachable or refuses fails only its own nodes (recorded C(failed) with a reason naming the
    host, RV(failed_hosts)). A node moved to another host takes its node.db (identity and data) from its previous
    container, which is removed once the node proved itself on the new host.
  - A node that fails after this run touched it has its container removed and its record marked C(failed) with the
    reason; a later run retries it. A node whose existing container had to be made anew instead gets its previous
    container back (see O(upgrade_batch) and O(upgrade_rollback)). Nodes proven alive are recorded C(online) (see O(register)).
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.docker
  - fenrir.fleet.registry
  - fenrir.fleet.engines
  - fenrir.fleet.attributes
  - fenrir.fleet.attributes.actiongroup_docker
options:
  network:
    description: The fleet's Docker bridge network (made by M(fenrir.fleet.fleet_network)).
    type: str
    default: fenrir-fleet
  nodes:
    description:
      - One entry per node, its settings. The knarr_node role's variables are these names with the C(knarr_node_)
        prefix (C(knarr_node_memory) is C(memory)); a setting left out takes the default given here.
      - Required with O(state=started) and O(state=probed). With O(state=absent) only C(label) is used.
    type: list
    elements: dict
    suboptions:
      label:
        description: The node's name everywhere; its container is C(fenrir-<label>) (a-z, 0-9, C(-), at most 56).
        type: str
        required: true
      location:
        description: Free text, recorded in the registry and in knarr.toml's C([fenrir]) table (at most 128 characters).
        type: str
      ip:
        description: The address the node holds; checked against the registry (it is reserved by M(fenrir.fleet.fleet_registry)).
        type: str
      nonce:
        description: Nonce of the prepare-payload payload the node came from (recorded, not interpreted).
        type: str
      image:
        description: The node image. Never pulled; it must be on the engine (M(fenrir.fleet.knarr_image) checks).
        type: str
        default: knarr-cluster-node:latest
      memory:
        description: Hard memory limit, swap included (C(256m), C(1g) or bytes; at least 6 MiB).
        type: raw
        default: 256m
      pids_limit:
        description: Most processes the container may hold.
        type: int
        default: 50
      cpus:
        description:
          - CPU limit, in CPUs (C(0.5) is half a CPU; Docker's C(--cpus)); at least C(0.01) and at most the
            engine's CPU count. Unset, no limit.
        type: float
      read_only:
        description:
          - A read-only root filesystem. The node's directory C(/opt/knarr) is then an anonymous volume of the
            container (filled from the image, removed with the container) - the engine puts files only into a
            volume of a read-only container - and C(/tmp) a tmpfs of 16 MB.
        type: bool
        default: false
      restart_policy:
        description: Docker restart policy.
        type: str
        default: unless-stopped
        choices: ["no", always, on-failure, unless-stopped]
      port:
        description: knarr's node port (C([node] port)).
        type: int
        default: 9010
      sidecar_port:
        description: C([node] sidecar_port).
        type: int
        default: 9011
      jurisdiction:
        description: C([node] jurisdiction).
        type: str
        default: eu
      cockpit_port:
        description:
          - The cockpit (the node's HTTP status and admin API) port, C(0) turns it off. Its C(auth_token) is the
            node's own, random, kept encrypted in the registry and written into C(knarr.toml) (mode 0600); it is
            masked in results and diffs.
        type: int
        default: 8080
      cockpit_bind:
        description: Address the cockpit binds to inside the container; a loopback address only.
        type: str
        default: 127.0.0.1
      bootstrap:
        description: Bootstrap peers, C(host:port).
        type: list
        elements: str
        default: []
      upnp:
        description: C([network] upnp).
        type: bool
        default: false
      provisioner_node_id:
        description:
          - The provisioner's node id; its first 16 characters map to O(nodes[].provisioner_endpoint) in C([peer_overrides]).
          - Default the node id of the registry's provisioner identity (see O(provisioner_db_b64)), the key the proof of
            life is signed with.
        type: str
      provisioner_endpoint:
        description: Where the provisioner listens, C(host:port).
        type: str
        default: 172.21.0.1:9040
      initial_credit:
        description: C([policy] initial_credit).
        type: float
        default: 100000.0
      min_balance:
        description: C([policy] min_balance).
        type: float
        default: -100000.0
      echo_source:
        description: Python source of the echo skill (proof of life). Default the stock echo handler.
        type: str
      echo_price:
        description: Price of the echo skill.
        type: float
        default: 0.0
      echo_tags:
        description: Tags of the echo skill.
        type: list
        elements: str
        default: [echo, fenrir]
      config_overrides:
        description:
          - Extra knarr.toml tables merged over the generated ones. Values of secret-looking keys (token, secret,
            password) are masked in results and diffs.
          - Refused, naming the node and the key - a path-like key (C(storage), a skill's C(handler), C(tls_cert),
            C(tls_key), C(*_dir), C(*_file), C(*_path), ...) pointing outside C(/opt/knarr); C(cockpit.bind) other
            than loopback; C(cockpit.auth_token) (the registry's); a generated table replaced by a value.
        type: dict
        default: {}
      docker_host:
        description:
          - The node's Docker host (a host of the fleet registry, prepared by the C(fenrir.fleet.docker_host) role), or
            C(local) for the controller's engine. Unset, the node stays where the registry has it, and a new node is
            placed on the C(connected) host with the most free capacity; without Docker hosts in the registry, the
            local engine. M(fenrir.fleet.fleet_placement) decides and records it; changing it moves the node.
        type: str
      network_mode:
        description:
          - C(bridge), an address on its host's C(fenrir-fleet) network (on a managed host the node port is published on
            the host's address); C(host), the host's network namespace, with ports of the host's pool (managed hosts only).
        type: str
        choices: [bridge, host]
        default: bridge
  allocations:
    description:
      - The records M(fenrir.fleet.fleet_registry) returned for these nodes (its RV(fenrir.fleet.fleet_registry#module:nodes)).
        In check mode they carry the addresses and node ids planned for nodes the registry does not hold yet.
    type: list
    elements: dict
    default: []
  labels:
    description:
      - The labels of the nodes to decommission (O(state=absent) only), instead of O(nodes).
    type: list
    elements: str
  state:
    description:
      - V(started) makes every container match, starts it and, with O(wait), proves the node alive.
      - V(probed) changes no container; it only proves each node alive (the wait-for-boot stage; with O(register),
        register-fleet).
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
    description: Wait until each node proves itself alive before returning (wait-for-boot).
    type: bool
    default: true
  register:
    description:
      - Record the nodes that proved themselves alive C(online) (register-fleet). Nodes not proven are C(running)
        (started by this run) or C(failed) with the reason.
    type: bool
    default: true
  boot_timeout:
    description: Seconds each node has to prove itself alive.
    type: int
    default: 60
  provisioner_db_b64:
    description:
      - The provisioner's own knarr identity, a C(node.db) or a bare 32-byte Ed25519 seed, in base64. A secret; it is
        kept encrypted in the registry (replacing the identity there) and never returned.
      - Unset, the registry's provisioner identity is used, made (and kept encrypted) on first use.
      - The proof of life is signed with this identity, and it is the key a node's C([peer_overrides]) names unless
        O(nodes[].provisioner_node_id) says otherwise.
    type: str
  upgrade_batch:
    description:
      - Rolling upgrades. Nodes whose existing container must be made anew (a new O(nodes[].image), or any other
        setting that forces a recreate) are recreated in batches of this size, each batch proven alive (identity and
        signed echo) before the next starts; their C(node.db) moves into the new container. New nodes and nodes that
        need no new container are not part of the batches.
      - A count of nodes (V(10)) or a percentage of the nodes to recreate (V(25%), rounded up), at least 1. The
        default never recreates more than one node in four at once; V(100%) recreates them all at once.
      - With O(engines), batches span every Docker host (a batch takes a node of each host in turn).
      - While a node is recreated its previous container is kept aside, stopped, as C(fenrir-<label>.previous), and
        removed once the new one answered. A run killed in the middle leaves it there; the next run puts it back and
        upgrades the node again.
    type: raw
    default: 25%
  upgrade_rollback:
    description:
      - What a batch whose nodes fail their proof of life within O(boot_timeout) is followed by. Each failed node
        gets its previous container back (its previous image and C(node.db)), is proven alive again and recorded
        C(online) with the reason; the run stops there and fails, naming every failed node, its old and new image and
        what it answered. Later batches are not touched (RV(upgrade.held_back)).
      - V(batch) leaves the nodes of earlier batches upgraded (RV(upgrade.upgraded)).
      - V(all) also recreates the nodes of earlier batches on the image they ran before (their C(node.db) carried
        over), batch by batch, last batch first (RV(upgrade.reverted)).
    type: str
    choices: [batch, all]
    default: batch
attributes:
  check_mode:
    support: full
    details:
      - Plans every node (create, recreate, files, start) without changing Docker or the registry.
  diff_mode:
    support: full
    details:
      - Shows the container settings and file contents before and after; C(node.db) only as its node id.
  idempotent:
    support: full
  action_group:
    support: full
notes:
  - The module fails when any node fails, after handling all of them; RV(failed_nodes) names them.
requirements:
  - docker (the Docker SDK for Python)
  - cryptography
  - tomli_w
seealso:
  - module: fenrir.fleet.fleet_registry
  - module: fenrir.fleet.knarr_image
  - module: fenrir.fleet.node_identity
"""

EXAMPLES = r"""
- name: Addresses and identities for two nodes
  fenrir.fleet.fleet_registry:
    registry: /var/lib/fenrir/fleet.db
    nodes:
      - label: alpha
      - label: beta
  register: reserved

- name: Bring them up and prove them alive
  fenrir.fleet.knarr_container:
    registry: /var/lib/fenrir/fleet.db
    nodes:
      - label: alpha
        location: eu-north
      - label: beta
        memory: 512m
    allocations: "{{ reserved.nodes }}"

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
    docker_host:
      description: With O(engines), the node's engine (a Docker host, or C(local)); also in C(result).
      type: str
      returned: when O(engines) is given
    endpoint:
      description: With O(engines), where the node answers, C(host:port) (also in C(result)).
      type: str
      returned: when O(engines) is given
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
provisioner_node_id:
  description: The node id of the provisioner identity the nodes were probed with (never its seed).
  returned: O(state=started) or O(state=probed)
  type: str
  sample: 5c1f0e...
hosts:
  description: With O(engines), per engine how many nodes it has and how many failed, and why the engine failed.
  returned: when O(engines) is given and O(state) is not C(absent)
  type: dict
  sample: {local: {nodes: 3, failed: 0, reason: null}, docker2.example.net: {nodes: 3, failed: 3,
           reason: "Docker host 'docker2.example.net': unreachable: ..."}}
failed_hosts:
  description: With O(engines), the engines that failed, with the reason (their nodes are failed).
  returned: when O(engines) is given
  type: dict
upgrade:
  description: The rolling upgrade (O(upgrade_batch)); in check mode the plan.
  returned: O(state=started)
  type: dict
  contains:
    batch_size:
      description: Nodes recreated at once.
      type: int
    batches:
      description: How many batches.
      type: int
    rollback:
      description: O(upgrade_rollback).
      type: str
    plan:
      description: Per node to recreate, its C(label), C(batch) (from 1), C(from_image), C(to_image), their ids
        (C(from_image_id), C(to_image_id)), C(docker_host) and the C(reasons) for a new container.
      type: list
      elements: dict
    upgraded:
      description: Nodes recreated and proven alive (and not reverted).
      type: list
      elements: str
    rolled_back:
      description: Nodes of the failed batch, put back on their previous container.
      type: list
      elements: str
    reverted:
      description: With O(upgrade_rollback=all), nodes of earlier batches recreated on their previous image.
      type: list
      elements: str
    held_back:
      description: Nodes of the batches after the failed one, not touched.
      type: list
      elements: str
    failed_batch:
      description: The number of the batch that failed, or null.
      type: int
  sample:
    batch_size: 2
    batches: 3
    rollback: batch
    plan: [{label: alpha, batch: 1, from_image: "knarr-cluster-node:0.56", to_image: "knarr-cluster-node:0.57",
            from_image_id: "sha256:9a1b...", to_image_id: "sha256:77c0...", docker_host: null,
            reasons: ["image_id sha256:9a1b... -> sha256:77c0..."]}]
    upgraded: [alpha, beta]
    rolled_back: []
    reverted: []
    held_back: []
    failed_batch: null
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_container
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    # On the controller, with a local connection, the action plugin of the same name runs this logic in the worker.
    run_module(AnsibleModule(supports_check_mode=True, **knarr_container.ARGUMENT_SPEC), knarr_container)


if __name__ == "__main__":
    main()
