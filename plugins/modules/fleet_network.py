#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_network
short_description: The fleet's Docker bridge network, with a fixed subnet and gateway
version_added: 0.1.0
description:
  - Creates the bridge network the fleet's nodes get their fixed addresses on, when it is missing.
  - An existing network of that name with another subnet, gateway or driver is an error that says so;
    a subnet overlapping another Docker network is refused before anything is created.
  - With O(state=absent), removes it when no container is attached.
  - With O(engines) (a fleet over several Docker hosts) the network is made on every engine at once, each with its own
    subnet (O(engines[].subnet), a managed host's /24 allocated by the registry; the local engine's is O(subnet)).
    An engine that cannot be reached or refuses is listed in RV(failed_engines); the module does not fail for it.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.docker
  - fenrir.fleet.engines
  - fenrir.fleet.attributes
  - fenrir.fleet.attributes.actiongroup_docker
options:
  name:
    description: Network name.
    type: str
    default: fenrir-fleet
  subnet:
    description: IPv4 subnet in CIDR form.
    type: str
    default: 172.21.0.0/24
  gateway:
    description: Gateway address (the host side of the bridge). Default the subnet's first host address.
    type: str
  driver:
    description: Network driver.
    type: str
    default: bridge
  labels:
    description: Labels for a network this module creates.
    type: dict
  state:
    description: Whether the network should exist.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
  action_group:
    support: full
requirements:
  - docker (the Docker SDK for Python)
"""

EXAMPLES = r"""
- name: The fleet network
  fenrir.fleet.fleet_network:
    name: fenrir-fleet
    subnet: 172.21.0.0/24
    gateway: 172.21.0.1
"""

RETURN = r"""
network:
  description: The network as it is (or would be) after the run.
  returned: when O(state=present)
  type: dict
  sample: {name: fenrir-fleet, id: 5b0c..., driver: bridge, subnet: 172.21.0.0/24, gateway: 172.21.0.1, containers: 3}
networks:
  description: With O(engines), the network on each engine.
  returned: when O(engines) is given
  type: dict
failed_engines:
  description: With O(engines), the engines that could not be reached or refused, with the reason.
  returned: when O(engines) is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_network
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    # On the controller, with a local connection, the action plugin of the same name runs this logic in the worker.
    run_module(AnsibleModule(supports_check_mode=True, **fleet_network.ARGUMENT_SPEC), fleet_network)


if __name__ == "__main__":
    main()
