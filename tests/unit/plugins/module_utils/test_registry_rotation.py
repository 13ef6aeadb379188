"""Key rotation end to end (registry/rotation.py) on both backends: every secret re-encrypted in one audited
transaction, the new key put in place atomically, and every way it can fail leaving a state that says what to do
and that the next rotation finishes."""

import os

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import (
    RegistryError, fingerprint, rotate)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import rotation

from registry_testlib import alloc, open_reg


def key_path(loc, tmp_path):
    """Where the test registry's key lives (beside a SQLite file; the fixture's FENRIR_REGISTRY_KEY_FILE)."""
    return os.environ.get("FENRIR_REGISTRY_KEY_FILE") or str(tmp_path / "fleet.key")


@pytest.fixture
def keyed(loc, tmp_path):
    """A registry with a node identity, a tenant spec and the provisioner's seed; returns its key file."""
    with open_reg(loc) as reg:
        alloc(reg, "a")
        with reg.transaction():
            reg.ensure_identity("a", b"a" * 32)
        reg.put_tenant("t1", spec=dict(env=dict(TOKEN="tok")))
        reg.provisioner_seed()
    return key_path(loc, tmp_path)


def read(path):
    with open(path, "rb") as fh:
        return fh.read().strip()


def entries(loc, key):
    with open_reg(loc, key_file=key) as reg:
        return reg.audit_entries()


def test_rotation_in_place(loc, keyed):
    old = read(keyed)
    result = rotate(loc, actor="pytest")
    new = read(keyed)
    assert new != old and result["changed"] is True and result["records"] == 3
    assert result["key_file"] == keyed and result["key_fingerprint"] == fingerprint(new)
    assert result["previous_key_fingerprint"] == fingerprint(old) and result["finished_interrupted"] is False
    assert oct(os.stat(keyed).st_mode & 0o777) == "0o600" and not os.path.exists(keyed + ".pending")
    with open_reg(loc) as reg:
        assert reg.get_seed("a") == b"a" * 32 and reg.get_tenant_spec("t1") == dict(env=dict(TOKEN="tok"))
        verdict = reg.verify()
        assert verdict["ok"] and verdict["head"] == result["audit_head"]
        assert [e["action"] for e in reg.audit_entries()[-4:]] == ["rekey", "rekey", "rekey", "rotate_key"]
    assert old.decode() not in str(result) and new.decode() not in str(result)


def test_rotation_to_another_file(loc, keyed, tmp_path):
    elsewhere = str(tmp_path / "new" / "fleet.key")
    os.makedirs(os.path.dirname(elsewhere))
    old = read(keyed)
    rotate(loc, new_key_file=elsewhere)
    assert read(keyed) == old                                  # the old file is left as it was
    with open_reg(loc, key_file=elsewhere) as reg:
        assert reg.get_seed("a") == b"a" * 32
    with pytest.raises(RegistryError, match="is not the key of the registry"):
        with open_reg(loc) as reg:
            reg.get_seed("a")


def test_check_mode_proves_every_secret_opens_and_writes_nothing(loc, keyed):
    old, before = read(keyed), len(entries(loc, keyed))
    plan = rotate(loc, check_mode=True)
    assert plan["changed"] is True and plan["records"] == 3 and plan["key_fingerprint"] is None
    assert read(keyed) == old and len(entries(loc, keyed)) == before
    assert not os.path.exists(keyed + ".pending")


def test_a_new_key_that_cannot_be_written_changes_nothing(loc, keyed, tmp_path):
    old, before = read(keyed), len(entries(loc, keyed))
    nowhere = str(tmp_path / "missing-dir" / "fleet.key")
    with pytest.raises(RegistryError, match="not rotated, nothing was changed") as err:
        rotate(loc, new_key_file=nowhere)
    assert err.value.field == "new_key_file"
    assert read(keyed) == old and len(entries(loc, keyed)) == before


def test_a_failed_transaction_leaves_the_old_key(loc, keyed, monkeypatch):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import Registry

    def broken(self, new):
        raise RegistryError("boom")
    monkeypatch.setattr(Registry, "rotate_key", broken)
    old = read(keyed)
    real = Registry.rotate_key
    with pytest.raises(RegistryError, match="boom"):
        rotate(loc)
    assert read(keyed) == old and not os.path.exists(keyed + ".pending")
    monkeypatch.setattr(Registry, "rotate_key", real)
    with open_reg(loc) as reg:
        assert reg.get_seed("a") == b"a" * 32


def test_interrupted_after_commit_is_finished_by_the_next_rotation(loc, keyed, monkeypatch):
    """Killed (here: the rename refused) between COMMIT and putting the key in place: the registry's key is only in
    the pending file; every other run says so; running the rotation again puts it in place without rotating."""
    real_place = rotation._place

    def refused(pending, target, key):
        raise RegistryError("rename refused")
    monkeypatch.setattr(rotation, "_place", refused)
    with pytest.raises(RegistryError, match="rename refused"):
        rotate(loc)
    pending = keyed + ".pending"
    assert os.path.exists(pending)
    with pytest.raises(RegistryError) as err:
        with open_reg(loc) as reg:
            reg.get_seed("a")
    assert "is not the key of the registry" in str(err.value) and pending in str(err.value)
    monkeypatch.setattr(rotation, "_place", real_place)
    before = len(entries(loc, pending))
    done = rotate(loc)
    assert done["finished_interrupted"] is True and done["records"] == 0 and done["changed"] is True
    assert not os.path.exists(pending) and len(entries(loc, keyed)) == before
    with open_reg(loc) as reg:
        assert reg.get_seed("a") == b"a" * 32 and reg.verify()["ok"]


def test_the_place_error_says_where_the_key_is(loc, keyed, monkeypatch):
    real_replace = os.replace

    def no_rename(src, dst):
        if src.endswith(".pending"):                          # the last step only: the pending key is written
            raise OSError(30, "Read-only file system")
        return real_replace(src, dst)
    monkeypatch.setattr(rotation.os, "replace", no_rename)
    with pytest.raises(RegistryError) as err:
        rotate(loc)
    message = str(err.value)
    assert "now encrypted under the new key" in message and keyed + ".pending" in message and "mv " in message
    assert read(keyed + ".pending").decode() not in message


def test_a_stale_pending_key_is_removed(loc, keyed):
    from cryptography.fernet import Fernet
    with open(keyed + ".pending", "wb") as fh:
        fh.write(Fernet.generate_key())                       # a rotation that never committed
    result = rotate(loc)
    assert result["finished_interrupted"] is False and result["records"] == 3
    assert not os.path.exists(keyed + ".pending") and fingerprint(read(keyed)) == result["key_fingerprint"]


def test_commit_failing_with_unknown_outcome_keeps_the_pending_key(loc, keyed, monkeypatch):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import Registry
    real_end = Registry._end

    def lost(self, ok):
        if ok and self._tx_head is not None and not self.check_mode:
            real_end(self, False)
            raise RegistryError("server closed the connection unexpectedly")
        return real_end(self, ok)
    monkeypatch.setattr(Registry, "_end", lost)
    real_recorded = rotation._recorded_fingerprint
    monkeypatch.setattr(rotation, "_recorded_fingerprint", lambda location: None)   # cannot tell
    old = read(keyed)
    with pytest.raises(RegistryError, match="unknown") as err:
        rotate(loc)
    assert keyed + ".pending" in str(err.value) and os.path.exists(keyed + ".pending")
    monkeypatch.setattr(Registry, "_end", real_end)
    monkeypatch.setattr(rotation, "_recorded_fingerprint", real_recorded)
    assert read(keyed) == old
    result = rotate(loc)                                       # it was not committed: rotated afresh
    assert result["finished_interrupted"] is False and not os.path.exists(keyed + ".pending")


def test_a_commit_that_failed_removes_the_pending_key(loc, keyed, monkeypatch):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import Registry
    real_end = Registry._end

    def refused(self, ok):
        if ok and self._tx_head is not None and not self.check_mode:
            real_end(self, False)
            raise RegistryError("could not commit")
        return real_end(self, ok)
    monkeypatch.setattr(Registry, "_end", refused)
    with pytest.raises(RegistryError, match="not rotated"):
        rotate(loc)
    assert not os.path.exists(keyed + ".pending")


def test_a_registry_open_during_the_rotation_seals_with_the_new_key(loc, keyed):
    with open_reg(loc) as reg:
        alloc(reg, "b")                                        # this object has loaded the old key
        rotate(loc)
        with reg.transaction():                                # reloaded from the key file, now the new key
            reg.ensure_identity("b", b"b" * 32)
    with open_reg(loc) as reg:
        assert reg.get_seed("b") == b"b" * 32 and reg.verify()["ok"]


def test_rotation_needs_a_file_for_the_new_key(loc, keyed, monkeypatch):
    monkeypatch.delenv("FENRIR_REGISTRY_KEY_FILE", raising=False)
    monkeypatch.setenv("FENRIR_REGISTRY_KEY", read(keyed).decode())
    with pytest.raises(RegistryError, match="needs new_key_file") as err:
        rotate(loc)
    assert err.value.field == "new_key_file" and read(keyed).decode() not in str(err.value)


def test_a_broken_chain_is_not_rotated(loc, keyed):
    from registry_testlib import edit
    edit(loc, "UPDATE nodes SET location = 'edited' WHERE label = 'a'")
    old = read(keyed)
    with pytest.raises(RegistryError, match="does not verify"):
        rotate(loc)
    assert read(keyed) == old


def test_nothing_to_rotate_without_a_key(loc):
    open_reg(loc).close()                                      # an empty registry: no key yet
    with pytest.raises(RegistryError, match="nothing to rotate"):
        rotate(loc)
