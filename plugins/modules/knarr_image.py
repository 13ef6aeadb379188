#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: knarr_image
short_description: Check that the fleet's node images are on the Docker engine, before anything is changed
version_added: 0.2.0
description:
  - Inspects every image of O(images) on the engine and returns its id.
  - A missing image is an error naming the nodes that need it. Nothing is ever pulled; build the image locally
    (C(scripts/ensure-node-image)) or load it.
  - The knarr_node role runs this first, so a fleet run with a missing image stops before it makes a network, an
    address or a container.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.docker
  - fenrir.fleet.attributes
  - fenrir.fleet.attributes.read_only
  - fenrir.fleet.attributes.actiongroup_docker
options:
  images:
    description:
      - The images, each mapped to the labels of the nodes that use it (named in the error when it is missing).
    type: dict
    required: true
attributes:
  action_group:
    support: full
requirements:
  - docker (the Docker SDK for Python)
seealso:
  - module: fenrir.fleet.knarr_container
"""

EXAMPLES = r"""
- name: The node image is here
  fenrir.fleet.knarr_image:
    images:
      "knarr-cluster-node:latest": [alpha, beta]
"""

RETURN = r"""
images:
  description: Each image's id.
  returned: success
  type: dict
  sample: {"knarr-cluster-node:latest": "sha256:4f1c..."}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_image
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    # On the controller, with a local connection, the action plugin of the same name runs this logic in the worker.
    run_module(AnsibleModule(supports_check_mode=True, **knarr_image.ARGUMENT_SPEC), knarr_image)


if __name__ == "__main__":
    main()
