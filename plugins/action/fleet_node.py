# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side execution of fenrir.fleet.fleet_node (documented in plugins/modules/fleet_node.py)."""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.plugin_utils.in_process import InProcessModuleAction


class ActionModule(InProcessModuleAction):
    MODULE = "fleet_node"
    NEEDS_DOCKER = False
