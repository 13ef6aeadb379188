#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: node_identity
short_description: Validate or create a knarr node identity (node.db) and put it into a container
version_added: 0.1.0
description:
  - A knarr identity is an SQLite file, C(node.db), whose table C(node_identity(key_bytes BLOB)) holds one
    32-byte Ed25519 seed; the node id is the hex SHA-256 of the public key derived from it.
  - The identity is taken from O(node_db_b64) (validated; anything else is refused with the reason), else from the
    fleet registry (O(registry) and O(label)), else the one the container already holds, else a fresh one is made.
  - With O(container), writes it to O(path) in that container through the Docker API, only when the identity
    the container holds differs. Restart the node afterwards for it to load a new identity.
  - A C(cert.pem)/C(key.pem) beside O(path) made for another identity is removed with it (knarr makes its TLS
    certificate from its seed only when none is there, so a node would otherwise show the old identity's key).
    Files can be removed only from a running container; for a stopped one holding such a certificate the module
    fails, changing nothing.
  - The seed never appears in output, diffs or logs; only the node id does.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.docker
  - fenrir.fleet.attributes
  - fenrir.fleet.attributes.actiongroup_docker
options:
  container:
    description: Container (name or id) to put the identity into. Without it the module only validates or creates.
    type: str
  path:
    description: Where the identity lives in the container.
    type: str
    default: /opt/knarr/node.db
  mode:
    description:
      - File mode of O(path) in the container, as an octal string (V("0600")). An unquoted YAML C(0600) (a number)
        is taken as that mode too.
    type: raw
    default: "0600"
  node_db_b64:
    description: A node.db, base64-encoded, to use (for instance C(node_db_b64) of a prepare-payload payload).
    type: str
  registry:
    description: Fleet registry to take the identity from; the identity chosen is kept there (encrypted) and the record's C(node_id) follows it.
    type: str
    aliases: [db]
  key_file:
    description: The registry's key file. Default C(fleet.key) beside O(registry).
    type: path
  label:
    description: The node's label in O(registry).
    type: str
  generate:
    description: Make a fresh identity when none is given, stored or present in the container.
    type: bool
    default: true
  return_content:
    description:
      - Also return the identity as RV(node_db_b64). This is a secret; register the result with C(no_log).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - Shows the node id before and after, never the seed.
  idempotent:
    support: full
  action_group:
    support: full
requirements:
  - cryptography
  - docker (the Docker SDK for Python), with O(container)
"""

EXAMPLES = r"""
- name: Inject the payload's identity into a node's container
  fenrir.fleet.node_identity:
    container: fenrir-alpha
    node_db_b64: "{{ payload.node_db_b64 }}"
  no_log: true

- name: Make a fresh identity for a payload
  fenrir.fleet.node_identity:
    return_content: true
  register: fresh
  no_log: true
"""

RETURN = r"""
node_id:
  description: The node id of the identity (hex SHA-256 of the Ed25519 public key).
  returned: success
  type: str
  sample: 6e3b0d9f0c8f1c1e2a7f4b5c6d7e8f90112233445566778899aabbccddeeff00
source:
  description: Where the identity came from.
  returned: success
  type: str
  sample: node_db_b64
removed:
  description: Files removed from the container (or that would be, in check mode) - a certificate of another identity.
  returned: success
  type: list
  elements: str
  sample: [/opt/knarr/cert.pem, /opt/knarr/key.pem]
node_db_b64:
  description: The identity as a base64 node.db. Secret.
  returned: when O(return_content=true)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import node_identity
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    run_module(AnsibleModule(supports_check_mode=True, **node_identity.ARGUMENT_SPEC), node_identity)


if __name__ == "__main__":
    main()
