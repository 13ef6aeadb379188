# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a fenrir.fleet module inside the controller's worker when that is the same as running it there.

The fleet's hot-path modules (registry, images, network, containers) work on the controller: its registry and
its Docker engine. When the task's connection really is local, executing the module's logic in the worker
spares each task a fresh interpreter and module payload (about half a second each), most of what an idempotent
re-run of a 50-node fleet would otherwise cost.

It is the same execution, not a second implementation: the same argument spec (validated with Ansible's own
``ArgumentSpecValidator``), the same ``run()``, the task's ``environment:`` applied (so ``DOCKER_HOST`` or
``FENRIR_ACTOR`` set on a task mean what they mean to the module), the same no_log masking, the same alias
deprecations and warnings. Whatever it cannot reproduce is executed the ordinary way: another connection than
``local``, ``become``, ``async``, or a library missing from the controller's Python.
``tests/unit/plugins/plugin_utils/test_in_process.py`` runs every such module both ways and compares.
"""

from __future__ import annotations

import contextlib
import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.plugins.action import ActionBase

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import (
    missing_library, runtime_secrets, secret_values)

LOCAL_TRANSPORTS = ("local", "ansible.builtin.local")


@contextlib.contextmanager
def task_environment(environment):
    """os.environ with the task's ``environment:`` applied, restored afterwards."""
    saved = {name: os.environ.get(name) for name in environment}
    try:
        for name, value in environment.items():
            os.environ[name] = str(value)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def no_log_values(argument_spec, params):
    """The values of every option (and sub-option) marked ``no_log``, as AnsibleModule masks them."""
    found = set()
    for name, option in argument_spec.items():
        value = (params or {}).get(name)
        if value is None:
            continue
        if option.get("no_log"):
            if isinstance(value, (list, tuple, set)):
                found.update(str(v) for v in value if v not in (None, ""))
            elif isinstance(value, dict):
                found.update(str(v) for v in value.values() if v not in (None, ""))
            elif value != "":
                found.add(str(value))
        if option.get("options"):
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    found |= no_log_values(option["options"], item)
    return found


def alias_notices(argument_spec, args):
    """The deprecations and warnings AnsibleModule gives for aliases used in ``args`` (top level)."""
    deprecations, warnings = [], []
    for name, option in argument_spec.items():
        for alias in option.get("aliases") or ():
            if alias not in args:
                continue
            if name in args:
                warnings.append("Both option %s and its alias %s are set." % (name, alias))
            for dep in option.get("deprecated_aliases") or ():
                if dep.get("name") == alias:
                    deprecations.append(dict(msg="Alias '%s' is deprecated. See the module docs for more information"
                                             % alias, version=dep.get("version"),
                                             collection_name=dep.get("collection_name")))
    return deprecations, warnings


class InProcessModuleAction(ActionBase):
    """Base class: set LOGIC to the module's module_utils (``NAME``, ``ARGUMENT_SPEC``, ``run``)."""

    LOGIC = None
    _supports_check_mode = True
    _supports_async = True

    def not_in_process(self):
        """Why this task must run the module the ordinary way (None: it can run here)."""
        if self._connection.transport not in LOCAL_TRANSPORTS:
            return "connection %s" % self._connection.transport
        if self._play_context.become:
            return "become"
        if self._task.async_val:
            return "async"
        missing = missing_library(getattr(self.LOGIC, "REQUIREMENTS", ()))
        if missing:
            return "%s missing from the controller's Python" % missing[0]
        return None

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        if self.not_in_process():
            result.update(self._execute_module(module_name="fenrir.fleet.%s" % self.LOGIC.NAME,
                                               module_args=self._task.args, task_vars=task_vars))
            return result
        environment = {}
        self._compute_environment_string(raw_environment_out=environment)
        with task_environment(environment):
            result.update(self.run_here(dict(self._task.args), bool(self._task.check_mode), bool(self._task.diff)))
        return result

    def run_here(self, args, check_mode, diff):
        """Validate ``args`` as AnsibleModule would, run the module's logic, mask what AnsibleModule masks."""
        spec = self.LOGIC.ARGUMENT_SPEC
        validation = ArgumentSpecValidator(**spec).validate(args)
        params = validation.validated_parameters
        hidden = no_log_values(spec["argument_spec"], params)
        if validation.error_messages:
            msg = validation.errors.msg
            if validation.unsupported_parameters:
                msg = "Unsupported parameters for (fenrir.fleet.%s) module: %s" % (self.LOGIC.NAME, msg)
            return remove_values(dict(failed=True, msg=msg), hidden)
        hidden |= secret_values(self.LOGIC, params)
        deprecations, warnings = alias_notices(spec["argument_spec"], args)
        try:
            out = self.LOGIC.run(params, check_mode, diff)
        except ModuleFailure as exc:
            out = dict(exc.result, failed=True)
        hidden |= runtime_secrets(out)
        warnings += out.pop("warnings", [])
        if warnings:
            out["warnings"] = warnings
        if deprecations:
            out["deprecations"] = deprecations
        return remove_values(out, hidden)
