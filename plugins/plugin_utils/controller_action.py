# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of the collection's actions that run on the controller only (role_settings, node_outcome)."""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ControllerAction(ActionBase):
    """An action that needs no connection and sends nothing to the host: its options are checked against
    ``ARGUMENT_SPEC`` (the contract written in its module documentation), then ``act`` makes its result."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False
    ARGUMENT_SPEC: dict = {}

    def act(self, args, task_vars):
        """The action's result (a dict) from its validated ``args`` and the task's variables."""
        raise NotImplementedError

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)[1]
        result.update(self.act(args, task_vars or {}))
        return result
