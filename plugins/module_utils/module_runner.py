# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a fenrir.fleet module runs its logic: one place for what every module's ``main()`` does.

Each module's logic lives in a module_utils file named after it, which provides ``ARGUMENT_SPEC`` (the
contract, documented in the module file) and ``run(params, check_mode, diff)`` (returns the result or raises
ModuleFailure); optionally ``REQUIREMENTS`` (Python libraries) and ``secret_values(params)`` (values to mask
that are not options marked no_log, such as a token inside config_overrides).

Secrets a run only comes to know while it runs (a node's cockpit token, read from the registry) are handed
back under :data:`RUNTIME_SECRETS` in the result (or a ModuleFailure's): they are masked like no_log values
and the key itself is removed before anything is returned.
"""

from __future__ import annotations

import importlib
import traceback

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import ModuleFailure

# Import name -> what the operator installs.
LIBRARIES = {
    "docker": "docker (the Docker SDK for Python)",
    "cryptography": "cryptography",
    "tomli_w": "tomli_w",
}


def missing_library(names):
    """(pip name, traceback) of the first library in ``names`` that cannot be imported, else None."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            return LIBRARIES.get(name, name), traceback.format_exc()
    return None


#: Result key under which a module's logic hands over the secrets it came to know while running.
RUNTIME_SECRETS = "_fenrir_secret_values"


def secret_values(logic, params):
    finder = getattr(logic, "secret_values", None)
    return set(finder(params)) if finder else set()


def runtime_secrets(result):
    """Remove and return the secrets a run handed over in ``result`` (see :data:`RUNTIME_SECRETS`)."""
    return {str(v) for v in (result.pop(RUNTIME_SECRETS, None) or ()) if v not in (None, "")}


def _exit(module, result, failed=False):
    """Hand the logic's warnings to ``module.warn`` (``exit_json(warnings=...)`` is deprecated), then exit."""
    for warning in result.pop("warnings", None) or ():
        module.warn(warning)
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


def run_module(module, logic):
    """``main()`` of a module: check the libraries, run, exit with the result or fail with it."""
    missing = missing_library(getattr(logic, "REQUIREMENTS", ()))
    if missing:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib(missing[0]), exception=missing[1])
    for value in secret_values(logic, module.params):
        module.no_log_values.add(value)
    try:
        result = logic.run(module.params, module.check_mode, module._diff)
    except ModuleFailure as exc:
        failure = dict(exc.result)
        module.no_log_values.update(runtime_secrets(failure))
        _exit(module, failure, failed=True)
    module.no_log_values.update(runtime_secrets(result))
    _exit(module, result)
