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
  - With O(engines) (a fleet over several Docker hosts) every engine gets the images its nodes need, all engines at
    once. A managed host that lacks an image ID gets it copied over its TLS API from O(source) -- the controller's own
    engine (C(docker save) streamed straight into the host's C(load)) or the image archive O(archive) --, never held in
    memory. A host that cannot be reached or cannot load it is listed in RV(failed_engines) with the reason (its
    nodes fail with it later); the others go on. The module then does not fail for a host.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.docker
  - fenrir.fleet.engines
  - fenrir.fleet.attributes
  - fenrir.fleet.attributes.actiongroup_docker
options:
  images:
    description:
      - The images, each mapped to the labels of the nodes that use it (named in the error when it is missing).
    type: dict
    required: true
  source:
    description:
      - Where an image a managed host lacks is copied from, with O(engines). C(engine) is the engine of this module's
        connection options (the controller's), C(archive) the image archive O(archive).
    type: str
    choices: [engine, archive]
    default: engine
  archive:
    description: An image archive (C(docker save) output, optionally compressed) holding the images, for O(source=archive).
    type: path
attributes:
  action_group:
    support: full
  check_mode:
    support: full
    details:
      - Without O(engines) nothing is ever changed. With them, the copies are only planned.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - An image is copied only to a host that lacks its ID.
requirements:
  - docker (the Docker SDK for Python)
seealso:
  - module: fenrir.fleet.knarr_container
"""

EXAMPLES = r"""
- name: Every engine of the fleet holds the node image (copied from the controller's engine where it lacks)
  fenrir.fleet.knarr_image:
    images:
      "knarr-cluster-node:latest": [alpha, beta, gamma]
    engines: "{{ placement.engines }}"
    source: engine

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
engines:
  description: With O(engines), per engine each image's id (after any copy).
  returned: when O(engines) is given
  type: dict
copied:
  description: With O(engines), the images copied (or, in check mode, to be copied) per engine.
  returned: when O(engines) is given
  type: dict
  sample: {docker1.example.net: ["knarr-cluster-node:latest"]}
failed_engines:
  description: With O(engines), the engines that could not be reached or could not load an image, with the reason.
  returned: when O(engines) is given
  type: dict
  sample: {docker2.example.net: "Docker host 'docker2.example.net': cannot load image knarr-cluster-node:latest: no space left on device"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_image
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    # On the controller, with a local connection, the action plugin of the same name runs this logic in the worker.
    run_module(AnsibleModule(supports_check_mode=True, **knarr_image.ARGUMENT_SPEC), knarr_image)


if __name__ == "__main__":
    main()
