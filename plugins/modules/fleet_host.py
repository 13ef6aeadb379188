#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_host
short_description: A managed Docker host as a record of the fleet registry
version_added: 0.3.0
description:
  - Keeps one Docker host of the fleet in the registry's hosts table, with its history in the registry's audit chain.
  - "O(state=present) without O(result): the host is configured; a new (or decommissioned) record is C(pending), and
    gets a /24 of its own for its C(fenrir-fleet) network from O(fleet_range) (or O(subnet)). The local engine keeps
    C(172.21.0.0/24)."
  - "O(state=present) with O(result) (the C(docker_host_result) of the C(fenrir.fleet.docker_host) role, i.e. what the
    controller's own probe M(fenrir.fleet.docker_host_probe) proved): C(connected) with address, endpoint, certificate
    fingerprint and expiry, engine version and memory; or C(disconnected) with the problems as the reason."
  - "O(state=absent): the record is C(decommissioned) and its subnet freed. Refused, changing nothing, while knarr
    nodes or tenants live on the host (RV(blockers))."
  - O(state=query) reads the record and its blockers and changes nothing.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.registry
  - fenrir.fleet.attributes
options:
  name:
    description: The host's name in the fleet (its inventory host name in C(docker_hosts)).
    type: str
    required: true
  state:
    description: C(present) records it, C(absent) decommissions the record, C(query) only reads.
    type: str
    choices: [present, absent, query]
    default: present
  result:
    description:
      - What the controller's probe proved about the host (C(docker_host_result)) -- C(status) C(connected) or
        C(disconnected), C(address), C(endpoint), C(engine_version), C(cert_fingerprint_sha256), C(cert_not_after),
        C(memory_bytes), C(problems).
    type: dict
  max_nodes:
    description: The most knarr nodes placed on the host automatically (placement by capacity). Unset keeps it.
    type: int
  subnet:
    description: A /24 for the host's C(fenrir-fleet) network (it must be free). Default the lowest free /24 of O(fleet_range).
    type: str
  fleet_range:
    description: Where host subnets are allocated from (C(172.21.0.0/24) stays the local engine's).
    type: str
    default: 172.21.0.0/16
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
requirements:
  - cryptography
seealso:
  - module: fenrir.fleet.docker_host_probe
  - module: fenrir.fleet.fleet_placement
"""

EXAMPLES = r"""
- name: The host is in the registry (pending until proven)
  fenrir.fleet.fleet_host:
    registry: /var/lib/fenrir/fleet.db
    name: docker1.example.net
    max_nodes: 100
  delegate_to: localhost

- name: What the controller proved
  fenrir.fleet.fleet_host:
    registry: /var/lib/fenrir/fleet.db
    name: docker1.example.net
    result: "{{ docker_host_result }}"
  delegate_to: localhost
"""

RETURN = r"""
host:
  description: The host's record after the call.
  returned: success
  type: dict
  sample: {name: docker1.example.net, address: 10.44.0.21, endpoint: "tcp://10.44.0.21:2376", subnet: 172.21.1.0/24,
           status: connected, engine_version: 20.10.24+dfsg1, cert_fingerprint: "6C:F7:...", cert_not_after: 1804042641.0,
           memory_bytes: 25264979968, max_nodes: 100, reason: null}
blockers:
  description: What still lives on the host (knarr nodes and tenants of the registry); decommission is refused while there is any.
  returned: always
  type: list
  elements: str
  sample: ["knarr node 'alpha' lives on it"]
nodes:
  description: Labels of the knarr nodes that live on the host.
  returned: success
  type: list
  elements: str
tenants:
  description: The tenants that live on the host, with their prefix.
  returned: success
  type: list
  elements: dict
  sample: [{tenant_id: acme, prefix: fenrir}]
registry:
  description: The registry (a path, or a DSN without its password).
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_host
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    run_module(AnsibleModule(supports_check_mode=True, **fleet_host.ARGUMENT_SPEC), fleet_host)


if __name__ == "__main__":
    main()
