# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet registry options (plugins/module_utils/registry_options.py) and the fleet's address pool."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  registry:
    description:
      - The fleet registry, C(fleet.db), an SQLite file created (mode 0600, its directory 0700) on first use.
    type: str
    required: true
    aliases: [db]
  key_file:
    description:
      - The file holding the registry's secret key. Default C(fleet.key) beside O(registry).
    type: path
"""

    POOL = r"""
options:
  subnet:
    description: The fleet network's IPv4 subnet; node addresses are reserved inside it.
    type: str
    default: 172.21.0.0/24
  gateway:
    description:
      - The subnet's gateway (the provisioner listens there); never given to a node.
      - Default the subnet's first host address.
    type: str
  pool_start:
    description:
      - First address of the dynamic pool. Default the subnet's 10th address (C(172.21.0.10) in the default subnet).
    type: str
  pool_end:
    description:
      - Last address of the dynamic pool. Default the subnet's 7th address from the end (C(172.21.0.249) in a /24).
    type: str
"""
