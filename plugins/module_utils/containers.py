# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconcile many knarr node containers at once over the Docker API.

For each node: inspect the container; plan (create, recreate when a container-level setting
differs, put the files whose content differs, start or restart); act; wait until the node answers
its echo skill.  Nodes are independent, so they are reconciled on a thread pool: the cost of a
fleet is close to what the engine itself needs.  A node that fails after this run touched it has
its container removed, so a failure never leaves a half-made node behind.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import posixpath
import signal
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import APIError, NotFound
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import redact_toml, spec_digest
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import ProbeError, wait_until_alive

LABEL_PREFIX = "fenrir.fleet."
ROLE_LABEL = LABEL_PREFIX + "role"
ROLE_VALUE = "knarr-node"
NODE_DB_PATH = "/opt/knarr/node.db"


def fault_point(name):
    """Test hook: when FENRIR_FAULT_POINT names this point, the process is killed (SIGKILL) right here.

    The crash-safety tests use it to stop a provisioning run between two steps, as a power cut would.
    """
    if os.environ.get("FENRIR_FAULT_POINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


class NodeWork:
    """One node's desired state and, after reconcile(), what happened to it."""

    def __init__(self, spec, ip, files, seed, registry_path, node_id=None):
        self.spec = spec
        self.label = spec["label"]
        self.name = spec["server_id"]
        self.ip = ip
        self.files = dict(files)  # path -> (bytes, mode)
        self.seed = seed
        self.node_id = node_id or ident.node_id_from_seed(seed)
        self.registry_path = registry_path
        self.labels = {
            ROLE_LABEL: ROLE_VALUE,
            LABEL_PREFIX + "label": self.label,
            LABEL_PREFIX + "server_id": self.name,
            LABEL_PREFIX + "registry": registry_path,
            LABEL_PREFIX + "spec": spec_digest(spec),
        }
        if spec.get("location"):
            self.labels[LABEL_PREFIX + "location"] = spec["location"]
        self.actions = []
        self.failed = False
        self.reason = None
        self.container_id = None
        self.state = None
        self.status = None
        self.before = None
        self.after = None
        self.boot_seconds = None
        self.registry_status = None
        self.compared = None

    @property
    def changed(self):
        return bool(self.actions)

    def result(self, check_mode=False):
        contract = dict(status="error" if self.failed else ("dry_run" if check_mode else "ok"),
                        ip=self.ip, server_id=self.name, provider="docker")
        return dict(label=self.label, server_id=self.name, ip=self.ip, node_id=self.node_id, result=contract,
                    container_id=self.container_id, actions=list(self.actions), changed=self.changed,
                    failed=self.failed, reason=self.reason, state=self.state, registry_status=self.registry_status,
                    boot_seconds=round(self.boot_seconds, 3) if self.boot_seconds is not None else None)


# --------------------------------------------------------------------------- file helpers

def content_mtime(data):
    """The modification time a file is written with: derived from its content, so a later look at
    size, mode and mtime alone (one HEAD request) tells whether it is still what was written."""
    return 1500000000 + int(hashlib.sha256(data).hexdigest()[:8], 16) % 100000000


#: uid/gid of the node image's unprivileged user (images/knarr-cluster-node/Dockerfile).
NODE_UID = NODE_GID = 10001


def make_tar(files):
    """An in-memory tar of ``{absolute path: (bytes, mode)}``, rooted at '/'.

    Files belong to the node's user (:data:`NODE_UID`), so a node that does not run as root can still
    rewrite what it was given.  There are no directory entries: extracting one would reset the image's
    ``/opt/knarr`` to root's ownership and the node could no longer write there (its cert.pem, a
    generated identity, node.db's write-ahead log); missing parents are made by the engine.
    Each file's mtime is :func:`content_mtime` of its bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(data)
            info.mode = mode
            info.uid, info.gid = NODE_UID, NODE_GID
            info.mtime = content_mtime(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_files(api, container, paths):
    """{path: (bytes, mode) or None} for files of a container, read with one archive of their common directory."""
    root = posixpath.commonpath(list(paths)) if len(paths) > 1 else posixpath.dirname(next(iter(paths)))
    if root in paths:
        root = posixpath.dirname(root)
    try:
        stream, _stat = api.get_archive(container, root)
    except NotFound:
        return {p: None for p in paths}
    data = b"".join(stream)
    found = {}
    base = posixpath.dirname(root.rstrip("/"))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            path = posixpath.join(base, member.name) if not member.name.startswith("/") else member.name
            if not path.startswith("/"):
                path = "/" + path
            if path in paths and member.isfile():
                found[path] = (tar.extractfile(member).read(), member.mode & 0o7777)
    return {p: found.get(p) for p in paths}


def stat_file(api, container, path):
    """(size, mode, mtime) of a path in a container from a HEAD request (no archive is made), or None."""
    import base64
    import calendar
    import json
    import re
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


def read_file(api, container, path):
    """(bytes, mode) of one regular file in a container, or None when it is absent."""
    try:
        stream, _stat = api.get_archive(container, path)
    except NotFound:
        return None
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                return tar.extractfile(member).read(), member.mode & 0o7777
    return None


def identity_of(data):
    """The seed inside a node.db image, or None when it holds no valid identity."""
    if data is None:
        return None
    try:
        return ident.read_seed(data)
    except ident.IdentityError:
        return None


# --------------------------------------------------------------------------- comparing

def container_view(info, network):
    """The settings of an inspected container this module manages, as a plain dict."""
    if info is None:
        return None
    host = info.get("HostConfig") or {}
    net = ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}
    ipam = net.get("IPAMConfig") or {}
    return dict(
        name=info["Name"].lstrip("/"),
        image=info["Config"].get("Image"),
        image_id=info.get("Image"),
        network=network if net else sorted(((info.get("NetworkSettings") or {}).get("Networks") or {}).keys()),
        ip=ipam.get("IPv4Address") or net.get("IPAddress") or None,
        memory=host.get("Memory"),
        pids_limit=host.get("PidsLimit"),
        restart_policy=(host.get("RestartPolicy") or {}).get("Name") or "no",  # the engine may report "" for no
        ports_published=bool(host.get("PortBindings")),
        labels={k: v for k, v in (info["Config"].get("Labels") or {}).items() if k.startswith(LABEL_PREFIX)},
        state=(info.get("State") or {}).get("Status"),
    )


def desired_view(work, image_id):
    spec = work.spec
    return dict(name=work.name, image=spec["image"], image_id=image_id, network=spec["network"], ip=work.ip,
                memory=spec["memory_bytes"], pids_limit=spec["pids_limit"], restart_policy=spec["restart_policy"],
                ports_published=False, labels=work.labels, state="running")


def recreate_reasons(current, desired):
    reasons = []
    for key in ("image_id", "network", "ip", "memory", "pids_limit", "restart_policy", "ports_published"):
        if current[key] != desired[key]:
            reasons.append("%s %s -> %s" % (key, current[key], desired[key]))
    for key, value in desired["labels"].items():
        have = current["labels"].get(key)
        if key == LABEL_PREFIX + "registry" and have and foreign_registry(current["labels"], value) is None:
            continue  # the same registry file, reached by another path
        if have != value:
            reasons.append("label %s" % key)
    return reasons


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


# --------------------------------------------------------------------------- the engine

class Reconciler:
    def __init__(self, client, check_mode=False, parallelism=8, boot_timeout=60.0, wait=True):
        self.client = client
        self.api = client.api
        self.check_mode = check_mode
        self.parallelism = max(1, int(parallelism))
        self.boot_timeout = boot_timeout
        self.wait = wait
        self._image_ids = {}
        self._lock = threading.Lock()

    # -- preflight, before anything changes
    def image_id(self, image):
        with self._lock:
            if image not in self._image_ids:
                try:
                    self._image_ids[image] = self.api.inspect_image(image)["Id"]
                except NotFound:
                    self._image_ids[image] = None
            return self._image_ids[image]

    def preflight(self, works, networks_planned=()):
        """Problems that stop the whole run before any change: (label, field, message) tuples."""
        problems = []
        for work in works:
            if self.image_id(work.spec["image"]) is None:
                problems.append((work.label, "image", "image %s is not present on the Docker engine; build it "
                                 "(scripts/ensure-node-image) -- nothing is ever pulled" % work.spec["image"]))
        for net in sorted({w.spec["network"] for w in works}):
            if net in networks_planned:
                continue
            try:
                self.api.inspect_network(net)
            except NotFound:
                labels = [w.label for w in works if w.spec["network"] == net]
                problems.append((labels[0], "network", "Docker network %s does not exist; create it with the "
                                 "fleet_network role first" % net))
        return problems

    def run(self, works):
        """Reconcile every node (``parallelism`` at a time), then wait for all of them at once.

        Waiting is I/O, not engine work: a node booting does not hold a slot another node
        could use to be created and started.
        """
        with ThreadPoolExecutor(max_workers=max(1, min(self.parallelism, len(works)))) as pool:
            list(pool.map(self._one, works))
        if self.wait and not self.check_mode:
            waiting = [w for w in works if not w.failed]
            if waiting:
                with ThreadPoolExecutor(max_workers=min(64, len(waiting))) as pool:
                    list(pool.map(self._wait_one, waiting))
        return works

    def _wait_one(self, work):
        try:
            self._wait(work)
        except (APIError, ProbeError, OSError) as exc:
            work.failed = True
            work.reason = work.reason or _reason(exc)
        if work.failed and work.actions:
            self._remove_failed(work)

    def diff_views(self, work):
        """(before, after) of a node for diff output; node.db shown only as the node id it holds."""
        if getattr(work, "compared", None) is None:
            return None, None
        current, desired, current_files, desired_files = work.compared
        before = dict(container=_public_view(current),
                      files={p: file_view(p, current_files[p]) for p in sorted(desired_files)})
        after = dict(container=_public_view(desired),
                     files={p: file_view(p, desired_files[p]) for p in sorted(desired_files)})
        return before, after

    # -- one node
    def _inspect(self, name):
        try:
            return self.api.inspect_container(name)
        except NotFound:
            return None

    def _one(self, work):
        try:
            self._reconcile(work)
        except (APIError, ProbeError, OSError, ident.IdentityError) as exc:
            work.failed = True
            work.reason = work.reason or _reason(exc)
        except Exception as exc:  # never let one node's surprise take the others down
            work.failed = True
            work.reason = "unexpected %s: %s" % (type(exc).__name__, exc)
        if work.failed and not self.check_mode and work.actions:
            self._remove_failed(work)

    def _remove_failed(self, work):
        try:
            self.api.remove_container(work.name, force=True)
            work.actions.append("remove failed container")
        except NotFound:
            pass
        except APIError as exc:
            work.reason += "; removing its container failed too: %s" % _reason(exc)
        work.container_id = None
        work.state = None

    def _reconcile(self, work):
        spec = work.spec
        desired_files = dict(work.files)
        desired_files[NODE_DB_PATH] = (IdentityFile(work.seed, work.node_id), 0o600)
        image_id = self.image_id(spec["image"])
        desired = desired_view(work, image_id)
        info = self._inspect(work.name)
        current = container_view(info, spec["network"])
        if current is not None and current["labels"].get(LABEL_PREFIX + "label") not in (None, work.label):
            raise ProbeError("container %s belongs to node %r; refusing to touch it"
                             % (work.name, current["labels"][LABEL_PREFIX + "label"]))
        other = foreign_registry(current["labels"] if current else {}, work.registry_path)
        if other:
            raise ProbeError("container %s belongs to the fleet registry %s, not %s; refusing to touch it"
                             % (work.name, other, work.registry_path))

        reasons = recreate_reasons(current, desired) if current is not None else []
        fresh = current is None or bool(reasons)
        if fresh:
            current_files = {p: None for p in desired_files}
        else:
            # Quick check first (one HEAD per file); bytes are read only for files that fail it.
            current_files = {}
            for path, want in desired_files.items():
                if quick_same(stat_file(self.api, work.name, path), want):
                    current_files[path] = want
            unsure = [p for p in desired_files if p not in current_files]
            if unsure:
                current_files.update(read_files(self.api, work.name, unsure))
        to_put = {p: c for p, c in desired_files.items() if not same_file(p, current_files[p], c)}
        work.compared = (current, desired, current_files, desired_files)
        running = current is not None and current["state"] == "running" and not fresh

        if self.check_mode:
            if current is None:
                work.actions.append("create")
            elif reasons:
                work.actions.append("recreate (%s)" % "; ".join(reasons))
            if to_put:
                work.actions.append("put %s" % ", ".join(sorted(posixpath.basename(p) for p in to_put)))
            if fresh or not running:
                work.actions.append("start")
            elif to_put:
                work.actions.append("restart")
            work.container_id = info["Id"] if info and not fresh else None
            work.state = "running" if not work.actions else None
            return

        if current is not None and reasons:
            kept = self._kept_node_db(work, current["state"] == "running")
            if kept is not None:
                desired_files[NODE_DB_PATH] = to_put[NODE_DB_PATH] = kept
                work.actions.append("keep node.db")
            self.api.remove_container(work.name, force=True)
            work.actions.append("remove (%s)" % "; ".join(reasons))
        if fresh:
            work.container_id = self._create(work)
            work.actions.append("create")
            fault_point("after_create")
        else:
            work.container_id = info["Id"]
        if to_put:
            self.api.put_archive(work.name, "/", make_tar({p: (bytes(c), m) for p, (c, m) in to_put.items()}))
            work.actions.append("put %s" % ", ".join(sorted(posixpath.basename(p) for p in to_put)))
            fault_point("after_put")
        if not running:
            fault_point("before_start")
            self.api.start(work.name)
            work.actions.append("start")
        elif to_put:
            self.api.restart(work.name, timeout=5)
            work.actions.append("restart")
        work.state = "running"

    def _kept_node_db(self, work, running):
        """The node's own node.db (its peers, ledger, ... besides the identity) from the container about to
        be recreated, when it holds the node's identity; None otherwise. The node is stopped first so
        that it closes the database cleanly."""
        try:
            if running:
                self.api.stop(work.name, timeout=10)
            files = read_files(self.api, work.name, [NODE_DB_PATH, NODE_DB_PATH + "-wal"])
        except APIError:
            return None
        db, wal = files.get(NODE_DB_PATH), files.get(NODE_DB_PATH + "-wal")
        if db is None:
            return None
        try:
            data = ident.with_wal(db[0], wal[0] if wal else None)
        except Exception:  # a database SQLite cannot open: start over from the identity
            return None
        seed = identity_of(data)
        if seed is None or not hmac.compare_digest(seed, work.seed):
            return None
        return data, 0o600

    def _create(self, work):
        spec = work.spec
        host_config = self.api.create_host_config(
            mem_limit=spec["memory_bytes"],
            memswap_limit=spec["memory_bytes"],
            pids_limit=spec["pids_limit"],
            restart_policy={"Name": spec["restart_policy"]},
            network_mode=spec["network"],
        )
        networking = self.api.create_networking_config({
            spec["network"]: self.api.create_endpoint_config(ipv4_address=work.ip),
        })
        created = self.api.create_container(
            image=spec["image"], name=work.name, hostname=work.name, labels=work.labels,
            host_config=host_config, networking_config=networking, detach=True,
        )
        return created["Id"]

    def _wait(self, work):
        def still_running():
            try:
                info = self.api.inspect_container(work.name)
            except NotFound:
                return "container %s disappeared" % work.name
            state = info["State"]
            # With a restart policy a crashing node comes back again and again: that is exiting too.
            if state.get("Status") in ("exited", "dead") or state.get("Restarting") or info.get("RestartCount"):
                logs = self.api.logs(work.name, tail=5).decode("utf-8", "replace").strip().replace("\n", " | ")
                return "container %s exited with code %s%s (%s)" % (
                    work.name, state.get("ExitCode"),
                    ", restarted %d times" % info["RestartCount"] if info.get("RestartCount") else "",
                    logs or "no log")
            return None

        try:
            status, waited = wait_until_alive(work.ip, work.spec["node_port"], work.node_id,
                                              timeout=self.boot_timeout, still_running=still_running)
        except ProbeError as exc:
            work.failed = True
            work.reason = "node %s (%s) is not alive: %s" % (work.label, work.name, exc)
            raise
        work.boot_seconds = waited
        work.status = status


def _public_view(view):
    if view is None:
        return None
    return {k: v for k, v in view.items() if k not in ("image_id",)}


def _reason(exc):
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def probe_works(works, parallelism=8, timeout=60.0):
    """Wait-for-boot only: probe each node (no container changes).  Fills failed/reason/status."""
    def one(work):
        try:
            status, waited = wait_until_alive(work.ip, work.spec["node_port"], work.node_id, timeout=timeout)
            work.status, work.boot_seconds = status, waited
        except (ProbeError, OSError) as exc:
            work.failed, work.reason = True, "node %s is not alive: %s" % (work.label, exc)
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(works) or 1))) as pool:
        list(pool.map(one, works))
    return works


def foreign_registry(labels, registry_path):
    """The registry a container's labels tie it to, when that is not ``registry_path`` (else None)."""
    theirs = (labels or {}).get(LABEL_PREFIX + "registry")
    if not theirs or registry_path is None:
        return None
    if theirs == registry_path or os.path.realpath(theirs) == os.path.realpath(registry_path):
        return None
    return theirs


def remove_containers(client, names, check_mode=False, parallelism=8, registry_path=None):
    """Remove containers by name; returns {name: 'removed'|'absent'|error string}.

    One listing of the engine's containers first: only those that exist are removed (one call each, in
    parallel), and one labelled for another fleet registry than ``registry_path`` is refused, not removed.
    Containers without labels (made by hand or by the original skill) are removed by name.
    """
    results = {}
    listed = {}
    for c in client.api.containers(all=True):
        for n in c.get("Names") or []:
            listed[n.lstrip("/")] = c.get("Labels") or {}

    def one(name):
        if name not in listed:
            results[name] = "absent"
            return
        other = foreign_registry(listed[name], registry_path)
        if other:
            results[name] = "error: container %s belongs to the fleet registry %s; refusing to remove it" % (
                name, other)
            return
        if check_mode:
            results[name] = "removed"
            return
        try:
            client.api.remove_container(name, force=True)
            results[name] = "removed"
        except NotFound:
            results[name] = "absent"
        except APIError as exc:
            results[name] = "error: %s" % _reason(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(names) or 1))) as pool:
        list(pool.map(one, names))
    return results