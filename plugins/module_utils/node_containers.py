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

import hmac
import os
import posixpath
import threading
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.fenrir.fleet.plugins.module_utils import checkpoints
from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils import rolling_upgrade
from ansible_collections.fenrir.fleet.plugins.module_utils.container_files import (
    ContainerFileError, IdentityFile, file_view, identity_of, make_tar, quick_same, read_files, same_file, size_cap,
    stat_file)
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import APIError, NotFound
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import ProbeError, wait_until_alive
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import node_files
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import (
    DATA_DIR, HARDENING, LOG_MAX_FILE, LOG_MAX_SIZE, NODE_USER, TMPFS, container_digest)

LABEL_PREFIX = "fenrir.fleet."
ROLE_LABEL = LABEL_PREFIX + "role"
ROLE_VALUE = "knarr-node"
NODE_DB_PATH = DATA_DIR + "/node.db"
# The TLS certificate a knarr node makes from its seed when (and only when) it finds none.
NODE_CERT_PATHS = (DATA_DIR + "/cert.pem", DATA_DIR + "/key.pem")
# A container being replaced is stopped and kept under this name until its successor proved itself alive: a failed
# upgrade gets it back, and a run killed in the middle finds it (and restores it) instead of a half-made node.
PREVIOUS_SUFFIX = ".previous"


def previous_name(name):
    """The name a node's container is kept under while its successor is made and proven."""
    return name + PREVIOUS_SUFFIX


class NodeWork:
    """One node's desired state and, after reconcile(), what happened to it."""

    def __init__(self, spec, ip, seed, registry_path, network, node_id=None, cockpit_token=None, former=(),
                 placement=None):
        self.spec = spec  # the node's settings, normalised (node_spec.normalize_node)
        self.label = spec["label"]
        self.name = spec["server_id"]
        self.ip = ip
        self.network = network
        # Where the node lives when it is not a bridge node of the local engine (placement.Placed), else None.
        self.placement = placement
        self.engine = placement.engine if placement else None
        self.container_ip = placement.container_ip if placement else ip
        self.probe_at = placement.probe_at if placement else (ip, spec["port"])
        self.carried_db = None  # a moved node's own node.db, taken from its previous container
        self.files = node_files(spec, placement.advertise_host if placement else ip, cockpit_token)
        self.cockpit_token = cockpit_token  # a secret: never in a result
        self.seed = seed
        self.node_id = node_id or ident.node_id_from_seed(seed)
        self.registry_path = registry_path
        self.former = tuple(former)  # registries this one was copied from: their containers are this one's
        self.labels = {
            ROLE_LABEL: ROLE_VALUE,
            LABEL_PREFIX + "label": self.label,
            LABEL_PREFIX + "server_id": self.name,
            LABEL_PREFIX + "registry": registry_path,
            LABEL_PREFIX + "spec": container_digest(spec, network),
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
        self.proven = False  # answered the proof of life in this run
        self.registry_status = None
        self.compared = None
        # Rolling upgrades (rolling_upgrade.py): why the existing container must be made anew and from which image
        # to which (None: not part of the upgrade's batches), its batch, the container kept aside, what happened.
        self.upgrade = None
        self.batch = None
        self.previous = None
        self.held_back = False
        self.rolled_back = False
        self.reverted = False
        self.upgrade_answer = None
        self.rollback_note = None
        self.running_image = None  # (reference, image id) the node's container runs after this run
        self.stopped_here = False  # this run stopped its container (to read its node.db)
        self.replaced_image = None  # (reference, image id) of the container this run replaced

    @property
    def changed(self):
        return bool(self.actions)

    def result(self, check_mode=False):
        contract = dict(status="error" if self.failed else ("dry_run" if check_mode else "ok"),
                        ip=self.ip, server_id=self.name, provider="docker")
        extra = {}
        if self.placement is not None:
            contract.update(docker_host=self.engine, endpoint="%s:%d" % self.probe_at)
            extra = dict(docker_host=self.engine, network_mode=self.placement.network_mode,
                         endpoint="%s:%d" % self.probe_at)
        if self.upgrade is not None:
            extra["upgrade"] = dict(batch=self.batch, from_image=self.upgrade["from_image"],
                                    to_image=self.upgrade["to_image"], held_back=self.held_back,
                                    rolled_back=self.rolled_back, reverted=self.reverted)
        if self.running_image is not None:
            extra["image"], extra["image_id"] = self.running_image
        return dict(extra, label=self.label, server_id=self.name, ip=self.ip, node_id=self.node_id, result=contract,
                    container_id=self.container_id, actions=list(self.actions), changed=self.changed,
                    failed=self.failed, reason=self.reason, state=self.state, registry_status=self.registry_status,
                    boot_seconds=round(self.boot_seconds, 3) if self.boot_seconds is not None else None)


# --------------------------------------------------------------------------- comparing

def _security_opts(options):
    """SecurityOpt as a comparable list ("no-new-privileges:true" is "no-new-privileges")."""
    return sorted("no-new-privileges" if o in ("no-new-privileges:true", "no-new-privileges=true") else o
                  for o in options or [])


def _mounts(host):
    """(type, target) of the container's mounts and tmpfs, sorted."""
    found = [(m.get("Type"), m.get("Target")) for m in host.get("Mounts") or []]
    found += [("tmpfs", target) for target in host.get("Tmpfs") or {}]
    found += [("bind", b.split(":")[1]) for b in host.get("Binds") or [] if ":" in b]
    return sorted(found)


def container_view(info, network):
    """The settings of an inspected container this module manages, as a plain dict."""
    if info is None:
        return None
    host = info.get("HostConfig") or {}
    net = ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}
    ipam = net.get("IPAMConfig") or {}
    log = host.get("LogConfig") or {}
    return dict(
        name=info["Name"].lstrip("/"),
        image=info["Config"].get("Image"),
        image_id=info.get("Image"),
        network=network if net else sorted(((info.get("NetworkSettings") or {}).get("Networks") or {}).keys()),
        ip=ipam.get("IPv4Address") or net.get("IPAddress") or None,
        memory=host.get("Memory"),
        pids_limit=host.get("PidsLimit"),
        nano_cpus=host.get("NanoCpus") or 0,
        restart_policy=(host.get("RestartPolicy") or {}).get("Name") or "no",  # the engine may report "" for no
        ports_published=published_ports(host.get("PortBindings")),
        user=info["Config"].get("User") or "",
        cap_drop=sorted(host.get("CapDrop") or []),
        cap_add=sorted(host.get("CapAdd") or []),
        security_opt=_security_opts(host.get("SecurityOpt")),
        privileged=bool(host.get("Privileged")),
        log=[log.get("Type"), (log.get("Config") or {}).get("max-size"), (log.get("Config") or {}).get("max-file")],
        read_only=bool(host.get("ReadonlyRootfs")),
        mounts=_mounts(host),
        labels={k: v for k, v in (info["Config"].get("Labels") or {}).items() if k.startswith(LABEL_PREFIX)},
        state=(info.get("State") or {}).get("Status"),
    )


def desired_view(work, image_id):
    spec = work.spec
    mounts = sorted([("tmpfs", t) for t in TMPFS] + [("volume", DATA_DIR)]) if spec["read_only"] else []
    publish = work.placement.publish if work.placement else None
    return dict(name=work.name, image=spec["image"], image_id=image_id, network=work.network, ip=work.container_ip,
                memory=spec["memory_bytes"], pids_limit=spec["pids_limit"], nano_cpus=spec["nano_cpus"],
                restart_policy=spec["restart_policy"],
                ports_published=["%s:%d->%d/tcp" % (publish[0], publish[1], publish[1])] if publish else False,
                user=HARDENING["user"],
                cap_drop=list(HARDENING["cap_drop"]), cap_add=list(HARDENING["cap_add"]),
                security_opt=list(HARDENING["security_opt"]), privileged=HARDENING["privileged"],
                log=list(HARDENING["log"]), read_only=bool(spec["read_only"]), mounts=mounts,
                labels=work.labels, state="running")


def published_ports(bindings):
    """A container's published ports as ``address:port->port/proto`` (sorted), or False when none."""
    out = []
    for container_port, binds in (bindings or {}).items():
        port, dummy, proto = str(container_port).partition("/")
        for bind in binds or []:
            out.append("%s:%s->%s/%s" % (bind.get("HostIp") or "0.0.0.0", bind.get("HostPort"), port, proto or "tcp"))
    return sorted(out) or False


#: What is compared between an inspected container and the wanted one: any difference means a new container.
CONTAINER_FIELDS = ("image_id", "network", "ip", "memory", "pids_limit", "nano_cpus", "restart_policy",
                    "ports_published", "user", "cap_drop", "cap_add", "security_opt", "privileged", "log", "read_only",
                    "mounts")


def recreate_reasons(current, desired, former=()):
    reasons = []
    for key in CONTAINER_FIELDS:
        if current[key] != desired[key]:
            reasons.append("%s %s -> %s" % (key, _shown(current[key]), _shown(desired[key])))
    for key, value in desired["labels"].items():
        have = current["labels"].get(key)
        if key == LABEL_PREFIX + "registry" and have and foreign_registry(current["labels"], value, former) is None:
            continue  # the same registry file reached by another path, or the registry this one was copied from
        if have != value:
            reasons.append("label %s" % key)
    return reasons


def _shown(value):
    if isinstance(value, list):
        return "[%s]" % ", ".join("/".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v) for v in value)
    return value


# --------------------------------------------------------------------------- the engine

class Reconciler:
    def __init__(self, client, check_mode=False, parallelism=8, boot_timeout=60.0, wait=True, identity=None,
                 upgrade_batch=None, upgrade_rollback="batch"):
        self.client = client
        self.upgrade_batch = upgrade_batch  # a count or "N%" of the nodes to recreate (rolling_upgrade.batch_size)
        self.upgrade_rollback = upgrade_rollback
        self.upgrade_report = None
        self.identity = identity  # the provisioner's: what the proof of life is signed with
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
        for net in sorted({w.network for w in works}):
            if net in networks_planned:
                continue
            try:
                self.api.inspect_network(net)
            except NotFound:
                labels = [w.label for w in works if w.network == net]
                problems.append((labels[0], "network", "Docker network %s does not exist; create it with the "
                                 "fleet_network role first" % net))
        return problems

    def run(self, works, defer_upgrades=False):
        """Reconcile every node (``parallelism`` at a time), then wait for all of them at once.

        Waiting is I/O, not engine work: a node booting does not hold a slot another node
        could use to be created and started.  Nodes whose existing container must be made anew are not part of
        that: they are recreated in batches, each proven alive before the next (rolling_upgrade.py). With
        ``defer_upgrades`` they are left alone and returned, for batches spanning several engines.
        """
        affected = self.prepare(works)
        self.run_group([w for w in works if w.upgrade is None])
        if defer_upgrades:
            return affected
        self.upgrade_report = rolling_upgrade.run_batches(
            affected, lambda w: self, self.upgrade_batch, self.upgrade_rollback, self.check_mode, self.parallelism)
        return works

    def run_group(self, works):
        """Reconcile ``works`` all at once, then wait for them all."""
        if not works:
            return works
        with ThreadPoolExecutor(max_workers=max(1, min(self.parallelism, len(works)))) as pool:
            list(pool.map(self._one, works))
        if self.wait and not self.check_mode:
            waiting = [w for w in works if not w.failed]
            if waiting:
                with ThreadPoolExecutor(max_workers=min(64, len(waiting))) as pool:
                    list(pool.map(self._wait_one, waiting))
        return works

    # -- rolling upgrades (rolling_upgrade.run_batches drives these)
    def prepare(self, works):
        """Before anything else: containers a killed run left aside restored; then which existing containers must
        be made anew (``work.upgrade``). Returns those works."""
        pool_size = max(1, min(self.parallelism, len(works) or 1))
        with ThreadPoolExecutor(max_workers=pool_size) as pool:
            if not self.check_mode:
                list(pool.map(self._recover_interrupted, works))
            list(pool.map(self.plan_recreate, works))
        return [w for w in works if w.upgrade is not None]

    def _recover_interrupted(self, work):
        """A container kept aside by a run that was killed before its successor proved itself: the successor (if
        any: perhaps created and never started, or never proven) is removed and the kept container takes its name
        back, stopped; the run then recreates it like any other."""
        kept_name = previous_name(work.name)
        try:
            kept = self._inspect(kept_name)
            if kept is None or kept.get("Name", "").lstrip("/") != kept_name:
                return
            labels = (kept.get("Config") or {}).get("Labels") or {}
            if labels.get(LABEL_PREFIX + "label") not in (None, work.label) or \
                    foreign_registry(labels, work.registry_path, work.former):
                return  # not this node's: left alone (reconciling the node reports what is wrong)
            if self._inspect(work.name) is not None:
                self.api.remove_container(work.name, force=True, v=True)
            self.api.rename(kept_name, work.name)
            work.actions.append("restore %s kept by an interrupted run" % kept_name)
        except (APIError, OSError) as exc:
            work.failed = True
            work.reason = "restoring %s kept by an interrupted run failed: %s" % (kept_name, engine_reason(exc))

    def plan_recreate(self, work):
        """Sets ``work.upgrade`` when the node's existing container must be made anew for its settings (its image
        or any other container-level setting): the reasons, the image it runs and the one it gets."""
        if work.failed or work.carried_db is not None:
            return
        try:
            info = self._inspect(work.name)
            if info is None:
                return
            current = container_view(info, work.network)
            if current["labels"].get(LABEL_PREFIX + "label") not in (None, work.label) or \
                    foreign_registry(current["labels"], work.registry_path, work.former):
                return  # refused when reconciled
            image_id = self.image_id(work.spec["image"])
            reasons = recreate_reasons(current, desired_view(work, image_id), work.former)
        except (APIError, OSError):
            return  # the reconcile reports it
        # What it runs now: what a node held back by a failed earlier batch keeps (reconciling overwrites it).
        work.container_id, work.state = info["Id"], current["state"]
        work.running_image = (current["image"], current["image_id"])
        if reasons and current["image"] != work.spec["image"]:
            # Another reference (perhaps to the same image id): said first, by name, for the plan.
            reasons.insert(0, "image %s -> %s" % (current["image"], work.spec["image"]))
        if reasons:
            work.upgrade = dict(reasons=reasons, from_image=current["image"], from_image_id=current["image_id"],
                                to_image=work.spec["image"], to_image_id=image_id)

    def upgrade_one(self, work):
        """Recreate one node of a batch (the previous container kept aside); a failure leaves the rollback to
        ``roll_back``."""
        self._one(work, restore=False)

    def prove_upgrade(self, work):
        """A recreated node proves itself alive; then its previous container is removed."""
        if self.wait:
            try:
                self._wait(work)
            except (APIError, ProbeError, OSError) as exc:
                work.failed = True
                work.reason = work.reason or engine_reason(exc)
                return
        self._drop_previous(work)

    def roll_back(self, work):
        """A node of a failed batch gets its previous container back and proves itself alive again."""
        work.upgrade_answer = work.reason
        if work.previous is None:
            # Failed before its container was set aside (e.g. its node.db could not be read): left as it was.
            work.rollback_note = "its container was not replaced (%s)" % (work.state or "gone")
            return
        self._restore(work)
        if work.previous is not None:  # restoring failed
            return
        work.rolled_back = True
        if not self.wait:
            work.rollback_note = "rolled back to its previous container (not proven: wait is off)"
            return
        try:
            self._wait(work)
            work.rollback_note = "rolled back to its previous container (%s, its node.db) and alive again" % (
                rolling_upgrade.describe_image(*work.running_image))
        except (APIError, ProbeError, OSError) as exc:
            work.proven = False
            work.rollback_note = "rolled back to its previous container (%s), which does not answer either: %s" % (
                rolling_upgrade.describe_image(*work.running_image), engine_reason(exc))

    def revert(self, work):
        """upgrade_rollback=all: a node upgraded in an earlier batch is recreated on the image it ran before
        (by image id when its reference moved), its node.db carried over, and proven alive."""
        ref, image_id = work.replaced_image or (work.upgrade["from_image"], work.upgrade["from_image_id"])
        target = ref if ref and self.image_id(ref) == image_id else image_id
        spec = dict(work.spec, image=target)
        clone = NodeWork.__new__(NodeWork)
        clone.__dict__.update(work.__dict__)
        clone.spec = spec
        clone.labels = dict(work.labels, **{LABEL_PREFIX + "spec": container_digest(spec, work.network)})
        clone.actions, clone.failed, clone.reason, clone.previous, clone.proven = [], False, None, None, False
        clone.upgrade = dict(work.upgrade, to_image=target, to_image_id=image_id)
        self._one(clone, restore=False)
        if not clone.failed:
            self.prove_upgrade(clone)
        if clone.failed:
            self.roll_back(clone)
        work.actions.extend("revert: %s" % a for a in clone.actions)
        work.container_id, work.state, work.proven = clone.container_id, clone.state, clone.proven
        work.running_image, work.reverted = clone.running_image, not clone.failed
        if clone.failed:
            work.failed = True
            work.reason = "reverting to %s failed: %s" % (target, clone.reason)
        else:
            work.replaced_image = None  # back where it was: its previous image is what it had before

    def _restore(self, work):
        """The node's kept container back under its name (the failed successor removed), started."""
        try:
            try:
                self.api.remove_container(work.name, force=True, v=True)
            except NotFound:
                pass
            self.api.rename(work.previous, work.name)
            work.actions.append("restore previous container")
            work.previous = None
            self.api.start(work.name)
            work.actions.append("start")
            info = self.api.inspect_container(work.name)
            work.container_id, work.state = info["Id"], "running"
            work.running_image = (info["Config"].get("Image"), info.get("Image"))
            work.replaced_image = None
        except (APIError, OSError) as exc:
            work.rollback_note = "rolling back failed: %s (container %s kept)" % (engine_reason(exc), work.previous)

    def _untouched(self, work):
        """A node whose container was not replaced after all (it failed before): started again if this run
        stopped it to read its node.db."""
        if getattr(work, "stopped_here", False):
            try:
                self.api.start(work.name)
                work.actions.append("start again")
            except (APIError, OSError) as exc:
                work.reason = "%s; starting its container again failed: %s" % (work.reason, engine_reason(exc))
        try:
            info = self.api.inspect_container(work.name)
            work.container_id, work.state = info["Id"], (info.get("State") or {}).get("Status")
        except (APIError, OSError):
            pass

    def _drop_previous(self, work):
        if work.previous is None:
            return
        try:
            self.api.remove_container(work.previous, force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            work.reason = "its previous container %s was not removed: %s" % (work.previous, engine_reason(exc))
            return
        work.actions.append("remove %s" % work.previous)
        work.previous = None

    def _wait_one(self, work):
        try:
            self._wait(work)
        except (APIError, ProbeError, OSError) as exc:
            work.failed = True
            work.reason = work.reason or engine_reason(exc)
        if work.failed and work.actions:
            self.discard(work)

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

    def _one(self, work, restore=True):
        if work.failed:  # failed before (restoring what an interrupted run kept aside)
            return
        try:
            self._reconcile(work)
        except (APIError, ProbeError, OSError, FleetError) as exc:
            work.failed = True
            work.reason = work.reason or engine_reason(exc)
        except Exception as exc:  # never let one node's surprise take the others down
            work.failed = True
            work.reason = "unexpected %s: %s" % (type(exc).__name__, exc)
        if work.failed and not self.check_mode and work.actions:
            if work.previous is not None:
                if restore:
                    self._restore(work)
            elif work.upgrade is not None and not any(a.startswith("remove (") for a in work.actions):
                self._untouched(work)  # failed before its container was replaced: it stays, running as it was
            else:
                self.discard(work)

    def discard(self, work):
        """Remove the container this run made or changed for a node that failed (or lost its record)."""
        try:
            self.api.remove_container(work.name, force=True, v=True)
            work.actions.append("remove failed container")
        except NotFound:
            pass
        except APIError as exc:
            work.reason += "; removing its container failed too: %s" % engine_reason(exc)
        work.container_id = None
        work.state = None

    def _reconcile(self, work):
        spec = work.spec
        desired_files = dict(work.files)
        desired_files[NODE_DB_PATH] = (IdentityFile(work.seed, work.node_id), 0o600)
        if work.carried_db is not None:  # a moved node: its own node.db from its previous container
            desired_files[NODE_DB_PATH] = work.carried_db
        image_id = self.image_id(spec["image"])
        desired = desired_view(work, image_id)
        info = self._inspect(work.name)
        current = container_view(info, work.network)
        if current is not None and current["labels"].get(LABEL_PREFIX + "label") not in (None, work.label):
            raise ProbeError("container %s belongs to node %r; refusing to touch it"
                             % (work.name, current["labels"][LABEL_PREFIX + "label"]))
        other = foreign_registry(current["labels"] if current else {}, work.registry_path, work.former)
        if other:
            raise ProbeError("container %s belongs to the fleet registry %s, not %s; refusing to touch it"
                             % (work.name, other, work.registry_path))

        reasons = recreate_reasons(current, desired, work.former) if current is not None else []
        fresh = current is None or bool(reasons)
        identity_replaced = False
        if not fresh:
            # Quick check first (one HEAD per file); bytes are read only for files that fail it.
            current_files = {}
            for path, want in desired_files.items():
                if quick_same(stat_file(self.api, work.name, path), want):
                    current_files[path] = want
            unsure = [p for p in desired_files if p not in current_files]
            if unsure:
                current_files.update(read_files(self.api, work.name, unsure))
            replaced = self._identity_replaced(work, current_files[NODE_DB_PATH], desired_files[NODE_DB_PATH])
            if replaced:
                # knarr makes its TLS certificate from its seed only when it finds none: a node.db of another
                # identity has left one (cert.pem/key.pem), and the node would show that identity's key. A new
                # container starts clean (and without that identity's peers, ledger, ... in its data).
                reasons.append(replaced)
                fresh = identity_replaced = True
        if fresh:
            current_files = {p: None for p in desired_files}
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
            work.running_image = (spec["image"], image_id) if fresh else (current["image"], current["image_id"])
            return

        if current is not None and reasons:
            # A container restarting (a crash loop under its restart policy) is stopped too before it is read.
            was_up = current["state"] in ("running", "restarting")
            kept = None if identity_replaced else self._kept_node_db(work, was_up)
            work.stopped_here = was_up
            if kept is not None:
                desired_files[NODE_DB_PATH] = to_put[NODE_DB_PATH] = kept
                work.actions.append("keep node.db")
            if work.upgrade is not None and self.wait and not identity_replaced:
                # Kept aside, stopped, until the new container proved itself (then removed): a failed upgrade gets
                # it back, a killed run finds it.
                # Stopped whatever it said: renaming a container the engine is (re)starting fails ("sandbox not
                # found"), and a stopped container under unless-stopped stays stopped.
                self.api.stop(work.name, timeout=10)
                self.api.rename(work.name, previous_name(work.name))
                work.previous = previous_name(work.name)
                work.replaced_image = (current["image"], current["image_id"])
                work.actions.append("remove (%s); kept stopped as %s until the new container answers"
                                    % ("; ".join(reasons), work.previous))
                checkpoints.reached("after_set_aside")
            else:
                self.api.remove_container(work.name, force=True, v=True)
                work.replaced_image = (current["image"], current["image_id"])
                work.actions.append("remove (%s)" % "; ".join(reasons))
        if fresh:
            work.container_id = self._create(work)
            work.actions.append("create")
            checkpoints.reached("after_create")
            work.running_image = (spec["image"], image_id)
        else:
            work.container_id = info["Id"]
            work.running_image = (current["image"], current["image_id"])
        if to_put:
            # Into the node's directory, not '/': a read-only container takes archives only into its volume.
            self.api.put_archive(work.name, DATA_DIR,
                                 make_tar({p: (bytes(c), m) for p, (c, m) in to_put.items()}, DATA_DIR))
            work.actions.append("put %s" % ", ".join(sorted(posixpath.basename(p) for p in to_put)))
            checkpoints.reached("after_put")
        if not running:
            checkpoints.reached("before_start")
            self.api.start(work.name)
            work.actions.append("start")
        elif to_put:
            self.api.restart(work.name, timeout=5)
            work.actions.append("restart")
        work.state = "running"

    def _identity_replaced(self, work, current, desired):
        """Why the container must be made anew for its identity (None when it need not): its node.db holds
        another identity, or it has none but a TLS certificate is there (made for an identity now gone)."""
        if current is not None:
            seed = current[0].seed if isinstance(current[0], IdentityFile) else identity_of(current[0])
            if seed is not None and hmac.compare_digest(seed, work.seed):
                return None  # the same identity (perhaps another mode: put again, no new container)
            shown = ident.node_id_from_seed(seed) if seed is not None else "none (not a knarr identity)"
            return "node.db holds node %s, the registry's is %s" % (shown, work.node_id)
        stale = [p for p in NODE_CERT_PATHS if stat_file(self.api, work.name, p) is not None]
        if stale:
            return "no node.db but %s of an earlier identity" % " and ".join(posixpath.basename(p) for p in stale)
        return None

    def _kept_node_db(self, work, running):
        """The node's own node.db (its peers, ledger, ... besides the identity) from the container about to
        be recreated, when it holds the node's identity; None otherwise. The node is stopped first so
        that it closes the database cleanly -- but not for a node.db too large to read (refused before)."""
        for path in (NODE_DB_PATH, NODE_DB_PATH + "-wal"):
            found = stat_file(self.api, work.name, path)
            if found and isinstance(found[0], int) and found[0] > size_cap(path):
                raise ContainerFileError("%s in container %s is %d bytes, more than the %d the collection reads; "
                                         "it cannot be carried into a new container" % (
                                             path, work.name, found[0], size_cap(path)))
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
        extra = {}
        if spec["nano_cpus"]:
            extra["nano_cpus"] = spec["nano_cpus"]
        if spec["read_only"]:
            # put_archive into a read-only root filesystem is refused by the engine, but not into a volume: the
            # node's directory is an anonymous volume (filled from the image, removed with the container).
            extra.update(read_only=True, tmpfs=dict(TMPFS), mounts=[{"Type": "volume", "Target": DATA_DIR}])
        placed = work.placement.create_options() if work.placement else {}
        extra.update(placed.get("host_config", {}))
        host_config = self.api.create_host_config(
            mem_limit=spec["memory_bytes"],
            memswap_limit=spec["memory_bytes"],
            pids_limit=spec["pids_limit"],
            restart_policy={"Name": spec["restart_policy"]},
            network_mode=work.network,
            cap_drop=list(HARDENING["cap_drop"]),
            security_opt=list(HARDENING["security_opt"]),
            log_config={"Type": "json-file", "Config": {"max-size": LOG_MAX_SIZE, "max-file": LOG_MAX_FILE}},
            **extra
        )
        networking = None
        if work.container_ip:
            networking = self.api.create_networking_config({
                work.network: self.api.create_endpoint_config(ipv4_address=work.container_ip),
            })
        created = self.api.create_container(
            image=spec["image"], name=work.name, hostname=work.name if work.container_ip else None,
            labels=work.labels, user=NODE_USER, host_config=host_config, networking_config=networking, detach=True,
            **placed.get("container", {})
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
            status, waited = wait_until_alive(work.probe_at[0], work.probe_at[1], work.node_id,
                                              timeout=self.boot_timeout, still_running=still_running,
                                              identity=self.identity)
        except ProbeError as exc:
            work.failed = True
            work.reason = "node %s (%s) is not alive: %s" % (work.label, work.name, exc)
            raise
        work.boot_seconds = waited
        work.status = status
        work.proven = True


def _public_view(view):
    if view is None:
        return None
    return {k: v for k, v in view.items() if k not in ("image_id",)}


def engine_reason(exc):
    """What the engine said (its explanation), else the exception's text."""
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def probe_works(works, parallelism=8, timeout=60.0, identity=None):
    """Wait-for-boot only: probe each node (no container changes), signed by ``identity`` (the provisioner's).
    Fills failed/reason/status."""
    def one(work):
        try:
            status, waited = wait_until_alive(work.probe_at[0], work.probe_at[1], work.node_id, timeout=timeout,
                                              identity=identity)
            work.status, work.boot_seconds, work.proven = status, waited, True
        except (ProbeError, OSError) as exc:
            work.failed, work.reason = True, "node %s is not alive: %s" % (work.label, exc)
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(works) or 1))) as pool:
        list(pool.map(one, works))
    return works


def foreign_registry(labels, registry_path, former=()):
    """The registry a container's labels tie it to, when that is not ``registry_path`` (else None).  A registry
    ``registry_path`` was copied from (``former``, see registry/transfer.py) is not foreign: the copy took its
    fleet over."""
    theirs = (labels or {}).get(LABEL_PREFIX + "registry")
    if not theirs or registry_path is None or theirs in former:
        return None
    if theirs == registry_path or os.path.realpath(theirs) == os.path.realpath(registry_path):
        return None
    return theirs


def remove_containers(client, names, check_mode=False, parallelism=8, registry_path=None, former=()):
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
        kept = previous_name(name)  # kept aside by an upgrade that was interrupted: goes with the node
        if kept in listed and not foreign_registry(listed[kept], registry_path, former) and not check_mode:
            try:
                client.api.remove_container(kept, force=True, v=True)
            except (NotFound, APIError):
                pass
        if name not in listed:
            results[name] = "absent"
            return
        other = foreign_registry(listed[name], registry_path, former)
        if other:
            results[name] = "error: container %s belongs to the fleet registry %s; refusing to remove it" % (
                name, other)
            return
        if check_mode:
            results[name] = "removed"
            return
        try:
            client.api.remove_container(name, force=True, v=True)  # and its anonymous volume (read_only)
            results[name] = "removed"
        except NotFound:
            results[name] = "absent"
        except APIError as exc:
            results[name] = "error: %s" % engine_reason(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(names) or 1))) as pool:
        list(pool.map(one, names))
    return results
