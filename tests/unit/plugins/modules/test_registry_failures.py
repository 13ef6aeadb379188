"""What an operator sees when the registry cannot be used, end to end through a module (fenrir.fleet.fleet_registry
run as Ansible runs it): a clear failure naming the registry (a DSN without its password) and what to do -- no
traceback, no secret."""

import os
import shutil

import pytest
from cryptography.fernet import Fernet

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry, redact_dsn

from modlib import run_module

WRONG_PASSWORD = "wrong-pw-7f3a9c"


def _with_identity(loc):
    with Registry(loc, actor="pytest") as reg:
        with reg.transaction():
            reg.ensure(dict(label="alpha"), Pool())
            reg.ensure_identity("alpha", os.urandom(32))


def _read_only_wrapper(directory):
    """Run the module with ``directory`` read-only: a read-only bind mount in a mount namespace of its own when
    root (root writes files whatever their mode), the file and directory modes otherwise."""
    if os.geteuid() != 0:
        for name in os.listdir(directory):
            os.chmod(os.path.join(directory, name), 0o400)
        os.chmod(directory, 0o500)
        return ()
    if shutil.which("unshare") is None:
        pytest.skip("root without unshare(1): no way to make a read-only registry here")
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    return ("unshare", "--mount", "sh", "-c", script, directory)


@pytest.fixture
def case(request, tmp_path, monkeypatch):
    """(module arguments, environment, wrapper, what the message must say) for one kind of failure."""
    kind = request.param
    if kind == "read-only file":
        state = tmp_path / "state"
        state.mkdir()
        db = str(state / "fleet.db")
        _with_identity(db)
        wrapper = _read_only_wrapper(str(state))
        yield (dict(registry=db, label="beta"), {}, wrapper,
               [db, "is read-only", "make the file and its directory writable"])
        os.chmod(str(state), 0o700)
        return
    if kind == "unreachable server":
        dsn = "postgresql://postgres@127.0.0.1:1/fleet"
        yield dict(registry=dsn, label="beta"), {}, (), ["cannot reach the PostgreSQL registry " + dsn,
                                                         "check that the server runs"]
        return
    loc = request.getfixturevalue("pg_loc")
    shown = redact_dsn(loc)
    if kind == "wrong password":
        yield (dict(registry=loc, label="beta"), dict(PGPASSWORD=WRONG_PASSWORD, PGPASSFILE=str(tmp_path / "none")),
               (), [shown, "password authentication failed", "PGPASSWORD or a passfile"])
        return
    _with_identity(loc)
    if kind == "missing key":
        yield (dict(registry=loc, label="beta"), dict(FENRIR_REGISTRY_KEY_FILE=None, FENRIR_REGISTRY_KEY=None), (),
               ["the registry %s has secrets, but its key was not found" % shown, "give key_file, or set "
                "FENRIR_REGISTRY_KEY"])
        return
    other = tmp_path / "other.key"
    other.write_bytes(Fernet.generate_key())
    yield (dict(registry=loc, label="beta", key_file=str(other)), {}, (),
           ["is not the key of the registry %s" % shown, "nothing was written", "Give the registry's own key"])


@pytest.mark.parametrize("case", ["wrong password", "unreachable server", "missing key", "wrong key",
                                  "read-only file"], indirect=True)
def test_a_registry_that_cannot_be_used_is_a_clear_failure(tmp_path, case):
    args, env, wrapper, expected = case
    proc, result = run_module(tmp_path, "fleet_registry", env=env, wrapper=wrapper, **args)
    assert proc.returncode != 0 and result.get("failed") is True, result
    for text in expected:
        assert text in result["msg"], (text, result["msg"])
    assert "exception" not in result and "Traceback" not in proc.stdout + proc.stderr, result
    out = proc.stdout + proc.stderr
    assert WRONG_PASSWORD not in out
    for name in ("fleet.key", "other.key"):
        path = os.path.join(str(tmp_path), name)
        if os.path.exists(path):
            with open(path) as fh:
                assert fh.read().strip() not in out
