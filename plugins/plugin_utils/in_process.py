# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a fenrir.fleet module inside the controller's worker when its target is the controller.

The fleet's hot-path modules (registry, network, containers) always work on the controller: its
registry file and its Docker engine connection. Executing them in-process spares each task a fresh
interpreter and module payload (about half a second each), which is most of what an idempotent
re-run of a 50-node fleet would otherwise cost. For any other target -- or when the controller's
Python lacks the Docker SDK -- the module is executed the ordinary way.
"""

from __future__ import annotations

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import HAS_DOCKER
from ansible_collections.fenrir.fleet.plugins.module_utils.module_specs import (
    SPECS, ModuleFailure, execute, secret_values)

LOCAL_CONNECTIONS = ("local", "ansible.builtin.local")


class InProcessModuleAction(ActionBase):
    """Base class: set MODULE to the module's short name."""

    MODULE = None
    NEEDS_DOCKER = True
    _supports_check_mode = True
    _supports_async = False

    def _in_process(self):
        if self.NEEDS_DOCKER and not HAS_DOCKER:
            return False
        return self._connection.transport in LOCAL_CONNECTIONS or \
            getattr(self._play_context, "connection", None) in LOCAL_CONNECTIONS

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        if not self._in_process():
            result.update(self._execute_module(module_name="fenrir.fleet.%s" % self.MODULE,
                                               module_args=self._task.args, task_vars=task_vars))
            return result
        spec = SPECS[self.MODULE]
        validation = ArgumentSpecValidator(**spec).validate(dict(self._task.args))
        hidden = set(validation._no_log_values) | secret_values(self.MODULE, validation.validated_parameters)
        if validation.error_messages:
            result.update(failed=True, msg="; ".join(validation.error_messages))
            return remove_values(result, hidden)
        try:
            out = execute(self.MODULE, validation.validated_parameters, bool(self._task.check_mode),
                          bool(self._task.diff))
        except ModuleFailure as exc:
            out = dict(exc.result, failed=True)
        result.update(out)
        return remove_values(result, hidden)
