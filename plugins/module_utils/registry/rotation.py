# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key rotation end to end: a new key, every secret re-encrypted under it in one transaction, the key written
where the operator says -- in an order that leaves a recoverable state whatever fails or dies.

1. Under the registry's write lock, the new key is written whole (0600, fsynced) to ``<new key file>.pending``;
   nothing else has changed yet.  Failing here changes nothing: the old key stays the registry's.
2. In the same transaction every secret and the sealed audit key are re-encrypted under the new key, its
   fingerprint recorded, and the audit entries appended (:meth:`Registry.rotate_key`).  A failure before COMMIT
   rolls all of it back and removes the pending file.
3. After COMMIT the pending file is renamed over the new key file (atomic; the directory fsynced).

Between 2 and 3 -- the process killed, the rename refused -- the registry's key is the one in the pending file
and only there.  Running the rotation again finds it (its fingerprint is the one the registry records) and
finishes step 3 without rotating again; every other run meanwhile fails with a clear "not the key of the
registry" that points at the pending file.  A pending file whose key is not the registry's is what a rotation
that never committed left: the next rotation removes it.  When COMMIT itself fails and the server cannot say
whether it happened (a lost connection), the pending file is kept and the next run decides the same way.
"""

from __future__ import annotations

import os

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import RegistryError
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.keys import (
    KeySource, _fsync_dir, fingerprint, new_key, write_key_file)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import Location

PENDING_SUFFIX = ".pending"


def pending_path(path):
    return path + PENDING_SUFFIX


def pending_hint(key_path):
    """A sentence for "wrong key" errors when a rotation left a new key beside ``key_path``."""
    if key_path and os.path.exists(pending_path(key_path)):
        return (". A key rotation left a new key in %s: if the registry was rotated to it, run the rotation again "
                "(fenrir.fleet.fleet_registry_admin state=rekeyed, or playbooks/registry_rekey.yml) to put it in "
                "place" % pending_path(key_path))
    return ""


def _read_pending(path):
    """The key staged at ``path``, or None (absent, empty or not a key: a write that never finished)."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.keys import fernet
    try:
        with open(path, "rb") as fh:
            key = fh.read().strip()
        fernet(key)
        return key
    except (OSError, ValueError):
        return None


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise RegistryError("cannot remove the stale pending key %s: %s" % (path, exc), field="new_key_file")


def _place(pending, target, key):
    """Rename the pending key over ``target``.  Another rotation may have done it a moment before (see
    :func:`rotate`): then the key in place is checked instead."""
    try:
        os.replace(pending, target)
    except FileNotFoundError:
        if _read_pending(target) == key:
            return
        raise RegistryError("the pending key %s vanished before it was put in place as %s" % (pending, target),
                            field="new_key_file")
    except OSError as exc:
        raise RegistryError(
            "the registry's secrets are now encrypted under the new key (fingerprint %s), which is in %s; putting it "
            "in place as %s failed: %s. Move it there yourself (mv %s %s), or run the rotation again once the "
            "problem is fixed: it finishes the move without rotating again. Until then every run needs that key"
            % (fingerprint(key), pending, target, exc, pending, target), field="new_key_file")
    _fsync_dir(os.path.dirname(target))


def _recorded_fingerprint(location):
    """The key fingerprint the registry records, read over a fresh connection; None when it cannot be read."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import open_store
    try:
        store = open_store(Location(location), busy_timeout=10.0)
    except RegistryError:
        return None
    try:
        return store.get_meta("key_fingerprint")
    except store.errors:
        return None
    finally:
        store.close()


def _target(loc, keys, new_key_file):
    target = new_key_file or keys.path
    if not target:
        raise RegistryError("rotating the key of %s needs new_key_file (where to write the new key): its key comes "
                            "from %s, which is no file a new key could replace" % (loc.display, keys.describe()),
                            field="new_key_file")
    target = os.path.abspath(os.path.expanduser(target))
    if os.path.isdir(target):
        raise RegistryError("%s is a directory; give the path of the new key file" % target, field="new_key_file")
    return target


def rotate(location, key_file=None, new_key_file=None, actor=None, check_mode=False):
    """Rotate the key of the registry at ``location`` (see the module docstring), then verify it with the new key.

    ``key_file`` (or the usual sources, see ``keys.py``) holds the current key; the new one is written to
    ``new_key_file`` (default: the current key's file).  Returns dict(changed, registry, key_file,
    key_fingerprint, previous_key_fingerprint, records, finished_interrupted, audit_head); in check mode the new
    fingerprint is None, the rotation is done on the private copy (so every secret is proved to open) and
    nothing is written."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import Registry
    loc = Location(location)
    keys = KeySource(loc, key_file)
    target = _target(loc, keys, new_key_file)
    pending = pending_path(target)
    out = dict(changed=True, registry=loc.display, key_file=target, finished_interrupted=False)
    with Registry(location, key_file=key_file, actor=actor, check_mode=check_mode) as reg:
        recorded = reg.key_fingerprint()
        if recorded is None:
            raise RegistryError("the registry %s has no key yet (no secret was ever stored in it): there is nothing to "
                                "rotate" % loc.display, field="key_file")
        staged = _read_pending(pending)
        if staged is not None and fingerprint(staged) == recorded:
            return _finish(reg, pending, target, staged, check_mode, out)
        verdict = reg.verify()
        if not verdict["ok"]:
            raise RegistryError("the registry %s does not verify (%s); its key was not rotated. Run "
                                "playbooks/audit.yml and settle that first" % (loc.display, verdict["problem"]),
                                field="registry")
        previous = reg._sealer_for(create=False).fingerprint
        out.update(previous_key_fingerprint=previous)
        if check_mode:
            directory = os.path.dirname(target)
            if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
                raise RegistryError("the new key cannot be written to %s: its directory %s is missing or not writable"
                                    % (target, directory), field="new_key_file")
            out.update(records=reg.rotate_key(new_key()), key_fingerprint=None, audit_head=None)
            return out
        new = new_key()
        wrote = False
        reg._begin()  # the write lock: one rotation at a time, and no write between the check and the commit
        try:
            staged = _read_pending(pending)
            if staged is not None and fingerprint(staged) == reg.key_fingerprint():
                reg._end(False)  # another rotation committed while this one waited for the lock
                return _finish(reg, pending, target, staged, check_mode, out)
            _remove(pending)  # what a rotation that never committed left
            try:
                write_key_file(pending, new, replace=True)
            except RegistryError as exc:
                raise RegistryError("%s; the key was not rotated, nothing was changed" % exc.bare_message,
                                    field="new_key_file")
            wrote = True
            records = reg.rotate_key(new)
        except BaseException:
            reg._end(False)
            if wrote:
                _remove(pending)
            raise
        try:
            reg._end(True)
        except RegistryError as exc:
            now = _recorded_fingerprint(location)
            if now == previous:
                _remove(pending)
                raise RegistryError("%s; the key was not rotated (the registry still has its old key)"
                                    % exc.bare_message, field="registry")
            if now != fingerprint(new):
                raise RegistryError(
                    "%s. Whether the rotation was committed is unknown; the new key is kept in %s. Run the rotation "
                    "again once the registry is reachable: it puts that key in place if the rotation was committed, "
                    "and starts afresh (with the old key) if it was not" % (exc.bare_message, pending),
                    field="registry")
        _place(pending, target, new)
        out.update(records=records, key_fingerprint=fingerprint(new))
    out["audit_head"] = _verify_with(location, target, actor)
    return out


def _finish(reg, pending, target, staged, check_mode, out):
    """An earlier rotation committed but did not put its key in place: do it now (nothing is rotated again)."""
    out.update(finished_interrupted=True, records=0, key_fingerprint=fingerprint(staged),
               previous_key_fingerprint=None, audit_head=None)
    if check_mode:
        return out
    _place(pending, target, staged)
    reg.close()
    out["audit_head"] = _verify_with(reg.where.target, target, reg.actor)
    return out


def _verify_with(location, key_file, actor):
    """Verify the registry with the key now in ``key_file``; returns its audit head."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.core import Registry
    with Registry(location, key_file=key_file, actor=actor, check_mode=True) as reg:
        verdict = reg.verify()
    if not verdict["ok"]:
        raise RegistryError("the key was rotated, but the registry %s does not verify with the new key in %s: %s"
                            % (Location(location).display, key_file, verdict["problem"]), field="registry")
    return verdict["head"]
