# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a registry lives: a path (SQLite, the embedded default) or a ``postgresql://`` DSN (PostgreSQL).

A DSN is never shown with its password: :attr:`Location.display` is what messages, results and container
labels carry.  The password belongs in ``PGPASSWORD`` / a passfile (``~/.pgpass``, ``PGPASSFILE``), where no
``ps`` shows it; one given in the DSN works, and is masked wherever the DSN is shown.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

DSN_SCHEMES = ("postgresql://", "postgres://")


def is_dsn(location):
    return isinstance(location, str) and location.strip().lower().startswith(DSN_SCHEMES)


def redact_dsn(dsn):
    """The DSN without its password (``user:***@``) and without a ``password=`` query parameter."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "postgresql://(unparsable DSN)"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hostinfo = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = userinfo + "@" + hostinfo
    query = "&".join("password=***" if q.lower().startswith("password=") else q
                     for q in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def dsn_password(dsn):
    """The password written in a DSN, if any (to mask it in messages that might quote it)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return None
    if parts.password:
        return parts.password
    for q in parts.query.split("&"):
        if q.lower().startswith("password="):
            return q.split("=", 1)[1]
    return None


class Location:
    """A registry's address.  ``backend`` is ``sqlite`` or ``postgresql``; ``target`` the absolute path or the
    DSN as given (with any password); ``display`` what may be shown."""

    def __init__(self, location):
        if not isinstance(location, str) or not location.strip():
            from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import RegistryError
            raise RegistryError("the registry location must be a path or a postgresql:// DSN, not %r"
                                % (location,), field="registry")
        if is_dsn(location):
            self.backend = "postgresql"
            self.target = location.strip()
            self.display = redact_dsn(self.target)
            self.password = dsn_password(self.target)
        else:
            self.backend = "sqlite"
            self.target = os.path.abspath(os.path.expanduser(location))
            self.display = self.target
            self.password = None

    @property
    def is_file(self):
        return self.backend == "sqlite"

    def scrub(self, text):
        """``text`` with the DSN's password masked (a driver message may quote the DSN)."""
        text = str(text)
        if self.password:
            text = text.replace(self.password, "***")
        return text

    def __str__(self):
        return self.display


def registry_id(location):
    """The name a registry goes by outside itself (container labels, results): the absolute path of a
    SQLite file, the DSN without its password for PostgreSQL."""
    return Location(location).display
