# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side execution of fenrir.fleet.knarr_container (documented in plugins/modules/knarr_container.py)."""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.plugin_utils.in_process import InProcessModuleAction


class ActionModule(InProcessModuleAction):
    MODULE = "knarr_container"
    NEEDS_DOCKER = True
