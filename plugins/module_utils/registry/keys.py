# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The registry's secret key (Fernet): where it comes from, how it is checked, and what it seals.

Where the key is looked for, first match only (never a fall-back that could pick another key):

1. the ``key_file`` argument;
2. ``FENRIR_REGISTRY_KEY``: the key itself (an AWX credential's env injector);
3. ``FENRIR_REGISTRY_KEY_FILE``: a file holding it (an AWX credential's file injector);
4. ``fleet.key`` beside a SQLite registry.  A PostgreSQL registry has no "beside": one of 1-3 must be given.

A key *file* is created (0600, written whole, linked into place) only for a registry that has no key yet;
a registry that has one records its fingerprint (an HMAC of the key, which reveals nothing of it), so a
wrong or missing key is a clear error naming where the key was looked for -- before anything is written --
and never a silent new key.

Every secret is sealed with the name of the record it belongs to (``node:alpha``) inside the encrypted data
and checked on opening: a blob swapped or copied between rows does not open.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import RegistryError, canonical

ENV_KEY = "FENRIR_REGISTRY_KEY"
ENV_KEY_FILE = "FENRIR_REGISTRY_KEY_FILE"
BIND = "_bind"


def fernet(key):
    from cryptography.fernet import Fernet
    return Fernet(key)


def new_key():
    from cryptography.fernet import Fernet
    return Fernet.generate_key()


def fingerprint(key):
    """16 hex digits naming a key without revealing it (HMAC-SHA256 of the key's bytes with a fixed label)."""
    raw = base64.urlsafe_b64decode(key)
    return hmac.new(raw, b"fenrir.fleet registry key fingerprint", hashlib.sha256).hexdigest()[:16]


def valid_key(key, where):
    if not key:
        raise RegistryError("the registry key in %s is empty; give the registry's key there (if the registry has "
                            "no secret yet, remove the empty file and run again)" % where, field="key_file")
    try:
        fernet(key)
    except ValueError:
        raise RegistryError("the registry key in %s is not a valid key (a Fernet key: 44 characters of "
                            "url-safe base64)" % where, field="key_file")
    return key


# --------------------------------------------------------------------------- key files

def load_or_create_key(path, create):
    """The key in the 0600 file ``path``; with ``create``, a new one is made when the file is absent.

    A new key is written whole to a private temporary file in the same directory, flushed to disk, and only
    then linked into place: ``path`` never exists half-written, whatever kills the process.  When another
    process links its key first, that key is read and used."""
    for attempt in range(3):
        try:
            with open(path, "rb") as fh:
                key = fh.read().strip()
            break
        except FileNotFoundError:
            if not create:
                return None
            if attempt == 2:
                raise RegistryError("registry key %s disappears as soon as it is created" % path, field="key_file")
            _create_key(path)  # then read what is in place: ours, or the key of a process that won the race
        except OSError as exc:
            raise RegistryError("cannot read registry key %s: %s" % (path, exc), field="key_file")
    if not key:
        raise RegistryError("registry key %s is empty (an older fenrir.fleet was interrupted while creating "
                            "it); if no node has an identity yet (has_identity false everywhere) "
                            "remove the file and run again, else restore it from a backup" % path, field="key_file")
    try:
        fernet(key)
    except ValueError:
        raise RegistryError("registry key %s is not a valid key" % path, field="key_file")
    return key


def write_key_file(path, key, replace=False):
    """Put ``key`` at ``path`` (0600, written whole).  Without ``replace`` an existing file is kept:
    returns whether ours was linked.  With ``replace`` it is swapped in atomically (key rotation)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    except OSError as exc:
        raise RegistryError("cannot create registry key %s: %s" % (path, exc), field="key_file")
    try:
        try:
            os.fchmod(fd, 0o600)
            data = key + b"\n"
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if replace:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)
        except FileExistsError:
            return False  # another process was first: use its key
        except OSError as exc:
            raise RegistryError("cannot create registry key %s: %s" % (path, exc), field="key_file")
        _fsync_dir(directory)
        return True
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _create_key(path):
    return write_key_file(path, new_key())


def _fsync_dir(directory):
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------- where the key comes from

class KeySource:
    """Where a registry's key is looked for (see the module docstring).  ``where`` names it in messages."""

    def __init__(self, location, key_file=None, environ=None):
        env = os.environ if environ is None else environ
        self.path = None
        self.value = None
        if key_file:
            self.path = os.path.abspath(os.path.expanduser(key_file))
            self.where = "the key file %s" % self.path
        elif env.get(ENV_KEY):
            self.value = env[ENV_KEY].strip().encode("ascii", "replace")
            self.where = "the environment variable %s" % ENV_KEY
        elif env.get(ENV_KEY_FILE):
            self.path = os.path.abspath(os.path.expanduser(env[ENV_KEY_FILE]))
            self.where = "the key file %s (from %s)" % (self.path, ENV_KEY_FILE)
        elif location.is_file:
            self.path = os.path.join(os.path.dirname(location.target), "fleet.key")
            self.where = "the key file %s (fleet.key beside the registry)" % self.path
        else:
            self.where = None

    @property
    def given(self):
        return self.where is not None

    def describe(self):
        return self.where or ("nowhere: a PostgreSQL registry keeps no key beside it; give key_file, or set %s "
                              "(the key) or %s (a file holding it)" % (ENV_KEY, ENV_KEY_FILE))

    def load(self, create):
        """The key, or None when there is none (and ``create`` is false or no file can be made here)."""
        if self.value is not None:
            return valid_key(self.value, self.where)
        if self.path is None:
            return None
        key = load_or_create_key(self.path, create=create)
        return key


# --------------------------------------------------------------------------- sealing

class Sealer:
    """Encrypts and decrypts record secrets with one key, bound to the record they belong to."""

    def __init__(self, key, where):
        self.key = key
        self.where = where
        self._f = fernet(key)
        self.fingerprint = fingerprint(key)

    def seal(self, kind, label, data):
        return self._f.encrypt(canonical(dict(data, **{BIND: "%s:%s" % (kind, label)})).encode("utf-8"))

    def open(self, kind, label, token, legacy=False):
        """The data sealed for ``kind:label``.  ``legacy``: a v4 blob (no binding) is accepted (migration)."""
        from cryptography.fernet import InvalidToken
        try:
            data = json.loads(self._f.decrypt(bytes(token)))
        except InvalidToken:
            raise RegistryError("its secrets do not decrypt with the key from %s (wrong key, or the encrypted data "
                                "was changed behind the registry's back)" % self.where, label=label, field="key_file",
                                kind=kind)
        bound = data.pop(BIND, None)
        if bound != "%s:%s" % (kind, label) and not (legacy and bound is None):
            raise RegistryError("its encrypted secrets belong to %s, not to this record: they were swapped or copied "
                                "between records behind the registry's back. Restore the record's own secrets from a "
                                "backup" % ("%r" % bound if bound else "no record (unbound data)"), label=label,
                                field="secrets", kind=kind)
        return data
