# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fenrir.fleet.fleet_placement runs in the controller's worker when its connection is local (see plugin_utils/in_process.py);
the module (plugins/modules/fleet_placement.py) is its contract and runs otherwise. Every run of the knarr_node role
starts with it, so it costs no process of its own."""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_placement
from ansible_collections.fenrir.fleet.plugins.plugin_utils.in_process import InProcessModuleAction


class ActionModule(InProcessModuleAction):
    LOGIC = fleet_placement
