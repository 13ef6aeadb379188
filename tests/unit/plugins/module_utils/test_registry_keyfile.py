"""fleet.key: created whole or not at all, private, and shared by processes that race to create it."""

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import keys as registry
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import RegistryError, load_or_create_key

COLLECTIONS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))),
    "collections")

# Dies (SIGKILL-like: no cleanup, no finally) at the first os.write, i.e. while the key is being written.
KILLED_WHILE_WRITING = r"""
import os, sys
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import load_or_create_key
os.write = lambda fd, data: os._exit(9)
load_or_create_key(sys.argv[1], create=True)
"""


def test_kill_while_writing_the_key_leaves_no_empty_key(tmp_path):
    path = str(tmp_path / "fleet.key")
    proc = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, path],
                          env=dict(os.environ, PYTHONPATH=COLLECTIONS_DIR), capture_output=True, check=False)
    assert proc.returncode == 9, proc.stderr.decode()
    # fleet.key is either absent or a whole key; the next run makes (or reads) a usable one
    key = load_or_create_key(path, create=True)
    Fernet(key)
    assert load_or_create_key(path, create=False) == key
    with open(path, "rb") as fh:
        assert fh.read().strip() == key
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_losing_the_race_reads_the_winners_key(tmp_path, monkeypatch):
    path = str(tmp_path / "fleet.key")
    theirs = Fernet.generate_key()
    real_link = os.link

    def link(src, dst, *args, **kwargs):
        # another process finished creating the key just before us
        with open(dst, "xb") as fh:
            fh.write(theirs + b"\n")
        return real_link(src, dst, *args, **kwargs)
    monkeypatch.setattr(registry.os, "link", link)
    assert load_or_create_key(path, create=True) == theirs
    monkeypatch.undo()
    assert load_or_create_key(path, create=False) == theirs
    assert os.listdir(str(tmp_path)) == ["fleet.key"]       # no temporary file left behind


def test_new_key_is_private_and_nothing_else_is_left(tmp_path):
    path = str(tmp_path / "fleet.key")
    assert load_or_create_key(path, create=False) is None
    key = load_or_create_key(path, create=True)
    Fernet(key)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert os.listdir(str(tmp_path)) == ["fleet.key"]
    assert load_or_create_key(path, create=True) == key


WORKER = r"""
import sys, time, os
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import load_or_create_key
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
sys.stdout.write(load_or_create_key(sys.argv[1], create=True).decode())
"""


def test_processes_racing_to_create_the_key_agree(tmp_path):
    path, go = str(tmp_path / "fleet.key"), str(tmp_path / "go")
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_DIR)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, path, go], env=env, stdout=subprocess.PIPE)
             for dummy in range(6)]
    open(go, "w").close()
    keys = {p.communicate(timeout=60)[0] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(keys) == 1
    assert load_or_create_key(path, create=False) == keys.pop()


def test_empty_key_file_is_reported_clearly(tmp_path):
    path = tmp_path / "fleet.key"
    path.write_bytes(b"")
    with pytest.raises(RegistryError) as err:
        load_or_create_key(str(path), create=True)
    assert err.value.field == "key_file" and "empty" in str(err.value)
