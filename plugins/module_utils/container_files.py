# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files in containers: what is there, what is wanted, and putting it there in one archive.

A re-run must cost little when nothing changed, so a file is first compared by a HEAD request (size, mode and
a modification time derived from the content it was written with) and read only when that differs. A node.db
is compared by the identity inside it, never byte for byte: the node's own data in it (peers, ledger, ...)
is not the collection's to overwrite.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import io
import json
import posixpath
import re
import tarfile

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import NotFound
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import redact_toml


def content_mtime(data):
    """The modification time a file is written with: derived from its content, so a later look at
    size, mode and mtime alone (one HEAD request) tells whether it is still what was written."""
    return 1500000000 + int(hashlib.sha256(data).hexdigest()[:8], 16) % 100000000


#: uid/gid of the node image's unprivileged user (images/knarr-cluster-node/Dockerfile).
NODE_UID = NODE_GID = 10001


def make_tar(files, root="/"):
    """An in-memory tar of ``{absolute path: (bytes, mode)}``, its names relative to ``root`` (the directory it
    is to be extracted into: every path must be inside it).  A read-only container takes an archive only
    into a volume, so its files go in at their directory (``/opt/knarr``), not at '/'.

    Files belong to the node's user (:data:`NODE_UID`), so a node that does not run as root can still
    rewrite what it was given.  There are no directory entries: extracting one would reset the image's
    ``/opt/knarr`` to root's ownership and the node could no longer write there (its cert.pem, a
    generated identity, node.db's write-ahead log); missing parents are made by the engine.
    Each file's mtime is :func:`content_mtime` of its bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, (data, mode) in sorted(files.items()):
            name = posixpath.relpath(path, root)
            if name.startswith("..") or posixpath.isabs(name):
                raise ValueError("%s is not inside %s" % (path, root))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid, info.gid = NODE_UID, NODE_GID
            info.mtime = content_mtime(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


#: The most bytes read from a container for one file: its node.db (and write-ahead log), and anything else.
MAX_NODE_DB_BYTES = 128 * 1024 * 1024
MAX_FILE_BYTES = 1024 * 1024
#: Room for the tar headers around one file in an archive (PAX headers, padding, the end blocks).
TAR_SLACK = 64 * 1024


class ContainerFileError(FleetError):
    """A file in a container that the collection will not read (too large, not a regular file)."""


def size_cap(path):
    """How many bytes of ``path`` may be read from a container (node.db and its -wal/-journal are larger)."""
    name = posixpath.basename(path)
    return MAX_NODE_DB_BYTES if name.endswith(".db") or ".db-" in name else MAX_FILE_BYTES


def read_files(api, container, paths):
    """{path: (bytes, mode) or None} for files of a container: one archive per file, each within its cap."""
    return {p: read_file(api, container, p) for p in paths}


def stat_file(api, container, path):
    """(size, mode, mtime) of a path in a container from a HEAD request (no archive is made), or None."""
    response = api.head(api._url("/containers/{0}/archive", container), params={"path": path})
    if response.status_code == 404:
        return None
    api._raise_for_status(response)
    stat = json.loads(base64.b64decode(response.headers["X-Docker-Container-Path-Stat"]))
    # Go's time format: 2017-07-14T04:40:00(.fraction)(Z|+02:00) -- the daemon's local time with its offset.
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(Z|([+-])(\d\d):(\d\d))?",
                 stat.get("mtime") or "")
    mtime = None
    if m:
        mtime = calendar.timegm(tuple(int(x) for x in m.groups()[:6]) + (0, 0, 0))
        if m.group(8):
            offset = int(m.group(9)) * 3600 + int(m.group(10)) * 60
            mtime -= offset if m.group(8) == "+" else -offset
    is_regular = not (stat.get("mode", 0) & 0xFFF00000)  # Go FileMode type bits
    return (stat.get("size"), stat.get("mode", 0) & 0o7777, mtime) if is_regular else ("not a file", 0, None)


def quick_same(stat, desired):
    """Size, mode and content-derived mtime all match what writing ``desired`` would give."""
    if stat is None:
        return False
    data = bytes(desired[0])
    return stat == (len(data), desired[1], content_mtime(data))


def read_file(api, container, path, max_size=None):
    """(bytes, mode) of one regular file in a container, or None when it is absent.

    Only that file is archived by the engine, and at most ``max_size`` bytes of it (default
    :func:`size_cap`) are read: the engine's stat of the path is checked first, and the archive is read in
    chunks and abandoned once it grows past the cap, so a container cannot make the controller hold a
    directory or a huge file in memory. A path that is not a regular file (a symlink, a directory) is
    refused with :class:`ContainerFileError`."""
    cap = size_cap(path) if max_size is None else max_size
    try:
        stream, stat = api.get_archive(container, path)
    except NotFound:
        return None
    try:
        stat = stat or {}
        if stat.get("mode", 0) & 0xFFF00000:  # Go FileMode type bits: not a regular file
            raise ContainerFileError("%s in container %s is not a regular file (%s); refusing to read it"
                                     % (path, container, stat.get("linkTarget") and "a symlink to %s"
                                        % stat["linkTarget"] or "mode %#x" % stat.get("mode", 0)))
        if (stat.get("size") or 0) > cap:
            raise ContainerFileError("%s in container %s is %d bytes, more than the %d the collection reads"
                                     % (path, container, stat["size"], cap))
        chunks, got = [], 0
        for chunk in stream:
            got += len(chunk)
            if got > cap + TAR_SLACK:
                raise ContainerFileError("%s in container %s is more than the %d bytes the collection reads"
                                         % (path, container, cap))
            chunks.append(chunk)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        for member in tar.getmembers():
            if member.isfile():
                if member.size > cap:
                    raise ContainerFileError("%s in container %s is %d bytes, more than the %d the collection "
                                             "reads" % (path, container, member.size, cap))
                return tar.extractfile(member).read(), member.mode & 0o7777
            if member.issym() or member.islnk():
                raise ContainerFileError("%s in container %s is a link to %s; refusing to read it"
                                         % (path, container, member.linkname))
    return None


def identity_of(data):
    """The seed inside a node.db image, or None when it holds no valid identity."""
    if data is None:
        return None
    try:
        return ident.read_seed(data)
    except ident.IdentityError:
        return None


class IdentityFile:
    """A node.db wanted in a container, known by its seed; its bytes are built once, when needed."""

    def __init__(self, seed, node_id=None):
        self.seed = seed
        self.node_id = node_id or ident.node_id_from_seed(seed)  # check mode may plan a node id without its seed
        self._bytes = None

    def __bytes__(self):
        if self._bytes is None:
            self._bytes = ident.build_node_db(self.seed)
        return self._bytes


def file_view(path, content):
    """How a file appears in diffs: text as text, node.db only as the identity it holds."""
    if content is None:
        return None
    data, mode = content
    if isinstance(data, IdentityFile):
        return "<knarr identity node_id=%s mode=%04o>" % (data.node_id, mode)
    if path.endswith(".db"):
        seed = identity_of(data)
        return "<knarr identity node_id=%s mode=%04o>" % (ident.node_id_from_seed(seed) if seed else "none", mode)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None:
        return "<%d bytes, sha256 %s>" % (len(data), hashlib.sha256(data).hexdigest())
    return redact_toml(text) if path.endswith(".toml") else text


def same_file(path, current, desired):
    if current is None:
        return False
    if current[1] != desired[1]:
        return False
    if current is desired:
        return True
    if isinstance(desired[0], IdentityFile):
        if isinstance(current[0], IdentityFile):
            return hmac.compare_digest(current[0].seed, desired[0].seed)
        seed = identity_of(current[0])
        return seed is not None and hmac.compare_digest(seed, desired[0].seed)
    return current[0] == desired[0]
