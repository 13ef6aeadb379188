"""Running a fenrir.fleet module as Ansible runs it (a Python process of its own reading
``{"ANSIBLE_MODULE_ARGS": {...}}`` and printing one JSON result); shared by the module tests."""

import json
import os
import subprocess
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COLLECTIONS_DIR = os.path.join(os.path.dirname(TESTS_DIR), "collections")


def run_module(tmp_path, module, env=None, check_mode=False, diff=False, wrapper=(), **args):
    """(process, result) of ``fenrir.fleet.<module>`` with ``args``; ``env`` is added to (or, a None value,
    removed from) this process's environment; ``wrapper`` is a command the Python process runs under."""
    args = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    argfile = tmp_path / ("args-%s.json" % os.urandom(4).hex())
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    environ = dict(os.environ, PYTHONPATH=COLLECTIONS_DIR, FENRIR_ACTOR="pytest")
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    command = list(wrapper) + [sys.executable, "-m", "ansible_collections.fenrir.fleet.plugins.modules." + module,
                               str(argfile)]
    proc = subprocess.run(command, cwd=str(tmp_path), env=environ, capture_output=True, text=True, timeout=120,
                          check=False)
    argfile.unlink()
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("module printed no JSON (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    return proc, result
