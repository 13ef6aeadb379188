# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenant containers on one Docker engine: survey, refuse, plan, act -- many tenants at once.

* **Survey**: one listing of the engine's containers and one ``info`` (CPU count, log drivers).
* **Preflight** (nothing changes unless every tenant passes): the image is on the engine (never pulled),
  CPU within the engine's CPUs, the log driver known to the engine, the container name free or this
  registry's own tenant under this prefix, every host port free -- of other tenants and of any container.
* **Plan and act**, tenants in parallel (``parallelism`` threads, as knarr nodes are):

  - no container: create, start, wait until it runs (health ``healthy`` when it has a health check, else
    still running after ``start_settle`` seconds). A container starts without a restart policy and gets the
    spec's once it has proved itself: one that does not come up stays exited with its exit code;
  - CPU, memory or restart policy differ: ``docker update`` in place (a recreate if the engine refuses);
  - anything else differs (image, command, env, ports, log, health check): **recreate without losing
    the tenant** -- the old container is renamed ``<name>.previous`` (stopped only when it holds the
    same host ports), the new one is created and started under the name and must prove itself; then the
    old one is removed. If the new one does not prove itself it is removed, the old one gets its name back
    and runs again, and the tenant fails naming why;
  - stopped or failed: start, and wait as above (a failed start keeps the container, for its logs).

  A ``<name>.previous`` found at the start (a run killed mid-recreate) is the last container that proved
  itself: it gets its name back (replacing the unproven one) before anything else is planned.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.fenrir.fleet.plugins.module_utils import checkpoints
from ansible_collections.fenrir.fleet.plugins.module_utils.node_containers import (
    LABEL_PREFIX, ROLE_LABEL, engine_reason, foreign_registry)
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import APIError, NotFound
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import tenant_aside_name, tenant_container_name
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_spec import (
    MASK, docker_command, healthcheck_api, mask_value, masked_env, memory_bytes, nano_cpus,
    port_bindings, public_spec, recreate_view, restart_policy_api, spec_digest)
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_status import (
    classify, last_health_output, limits, published_ports)

ROLE_VALUE = "tenant"  # of ROLE_LABEL (fenrir.fleet.role), as knarr nodes are knarr-node
REGISTRY_LABEL = LABEL_PREFIX + "registry"
DIGEST_LABEL = LABEL_PREFIX + "spec_digest"
SPEC_LABEL = LABEL_PREFIX + "spec"  # the recreate view of the spec, env values masked: what the diff shows as before
OWNER = "fenrir.fleet"
WILDCARD_IPS = ("", "0.0.0.0", "::")


class TenantFailure(Exception):
    """A tenant's container did not come up (or a rollback was needed): the message says why."""


def tenant_labels(prefix, spec, registry, bind_address):
    """The labels of a tenant container: the seed's three under ``prefix``, and the collection's own."""
    view = recreate_view(public_spec(spec), bind_address)
    return {
        prefix + ".tenant_id": spec["tenant_id"],
        prefix + ".owner": OWNER,
        prefix + ".provider": "docker",
        prefix + ".container": spec["containers"][0]["name"],
        ROLE_LABEL: ROLE_VALUE,
        REGISTRY_LABEL: registry,
        DIGEST_LABEL: spec_digest(spec, bind_address),
        SPEC_LABEL: json.dumps(view, sort_keys=True, separators=(",", ":")),
    }


def tenant_id_label(labels):
    """(prefix, tenant id) of a container carrying some ``<prefix>.tenant_id`` label, else (None, None)."""
    for key, value in sorted((labels or {}).items()):
        if key.endswith(".tenant_id") and not key.startswith(LABEL_PREFIX):
            return key[:-len(".tenant_id")], value
    return None, None


def ownership_problem(name, labels, prefix, tenant_id, registry):
    """Why the container ``name`` is not this registry's tenant ``tenant_id`` under ``prefix`` (None if it is)."""
    labels = labels or {}
    theirs_prefix, theirs_id = tenant_id_label(labels)
    if labels.get(prefix + ".tenant_id") != tenant_id or labels.get(ROLE_LABEL) != ROLE_VALUE:
        if theirs_id is not None:
            owner = "tenant %r under prefix %r" % (theirs_id, theirs_prefix)
        elif labels.get(ROLE_LABEL):
            owner = "a %s container of fenrir.fleet" % labels[ROLE_LABEL]
        else:
            owner = "no fenrir.fleet tenant (no %s.tenant_id label)" % prefix
        return ("container %s exists and belongs to %s; refusing to touch it (remove or rename it, or choose "
                "another prefix)" % (name, owner))
    if REGISTRY_LABEL not in labels:
        return "container %s was not made by fenrir.fleet (no %s label); refusing to touch it" % (name, REGISTRY_LABEL)
    other = foreign_registry(labels, registry)
    if other:
        return "container %s belongs to the fleet registry %s, not %s; refusing to touch it" % (name, other, registry)
    return None


def _overlap(ip_a, ip_b):
    return ip_a in WILDCARD_IPS or ip_b in WILDCARD_IPS or ip_a == ip_b


class TenantWork:
    """One tenant's desired state and, after the run, what happened to it."""

    def __init__(self, spec, prefix, registry, bind_address):
        self.spec = spec
        self.tenant_id = spec["tenant_id"]
        self.prefix = prefix
        self.name = tenant_container_name(prefix, self.tenant_id)
        self.aside = tenant_aside_name(prefix, self.tenant_id)
        self.bind_address = bind_address
        self.digest = spec_digest(spec, bind_address)
        self.labels = tenant_labels(prefix, spec, registry, bind_address)
        self.info = None  # the container as found
        self.aside_info = None  # a previous container an interrupted run left aside
        self.image_id = None
        self.actions = []
        self.failed = False
        self.reason = None
        self.rolled_back = False
        self.final = None  # the container as left (inspect), None when there is none
        self.warnings = []

    @property
    def changed(self):
        return bool(self.actions)


class TenantEngine:
    def __init__(self, client, prefix, registry, bind_address="0.0.0.0", check_mode=False, parallelism=4,
                 start_timeout=60.0, start_settle=2.0, docker_host=None):
        self.client = client
        self.api = client.api
        self.prefix = prefix
        self.registry = registry
        self.bind_address = bind_address
        self.check_mode = check_mode
        self.parallelism = max(1, int(parallelism))
        self.start_timeout = float(start_timeout)
        self.start_settle = float(start_settle)
        self.docker_host = docker_host
        self._images = {}
        self._lock = threading.Lock()
        self.listing = None
        self.ncpu = None
        self.log_drivers = None

    # ------------------------------------------------------------------ survey
    def survey(self):
        """One listing of every container on the engine and one ``info``."""
        self.listing = {}
        for c in self.api.containers(all=True):
            for n in c.get("Names") or []:
                name = n.lstrip("/")
                if "/" not in name:  # legacy links show as /other/alias
                    self.listing[name] = dict(id=c.get("Id"), labels=c.get("Labels") or {}, state=c.get("State"),
                                              ports=c.get("Ports") or [])
        info = self.api.info()
        self.ncpu = info.get("NCPU")
        self.log_drivers = ((info.get("Plugins") or {}).get("Log")) or None
        return self

    def inspect(self, name):
        try:
            return self.api.inspect_container(name)
        except NotFound:
            return None

    def image_id(self, ref):
        with self._lock:
            if ref not in self._images:
                try:
                    self._images[ref] = self.api.inspect_image(ref)["Id"]
                except NotFound:
                    self._images[ref] = None
            return self._images[ref]

    def our_containers(self):
        """{tenant_id: (name, summary)} of this prefix's and registry's tenant containers (aside copies excluded)."""
        out = {}
        for name, c in sorted(self.listing.items()):
            tid = c["labels"].get(self.prefix + ".tenant_id")
            if tid is None or name != tenant_container_name(self.prefix, tid):
                continue
            if ownership_problem(name, c["labels"], self.prefix, tid, self.registry) is None:
                out[tid] = (name, c)
        return out

    # ------------------------------------------------------------------ preflight
    def preflight(self, works, removing=(), store=None):
        """Every reason to refuse, as SpecError (tenant and field named); nothing has changed yet."""
        problems = []
        for tid in removing:
            for name in (tenant_container_name(self.prefix, tid), tenant_aside_name(self.prefix, tid)):
                if name in self.listing:
                    why = ownership_problem(name, self.listing[name]["labels"], self.prefix, tid, self.registry)
                    if why:
                        problems.append(SpecError(tid, "tenant_id", why, kind="tenant"))
        mine = set()
        for work in works:
            mine.update((work.name, work.aside))
        for tid in removing:
            mine.update((tenant_container_name(self.prefix, tid), tenant_aside_name(self.prefix, tid)))
        taken = self._published_elsewhere(mine)
        for work in works:
            problems.extend(self._preflight_one(work, taken, store))
        return problems

    def _preflight_one(self, work, taken, store):
        problems = []

        def refuse(field, message):
            problems.append(SpecError(work.tenant_id, field, message, kind="tenant"))

        image = work.spec["containers"][0]["image"]
        work.image_id = self.image_id(image)
        if work.image_id is None:
            refuse("containers[0].image", "image %s is not present on the Docker engine at %s; load it there "
                   "(docker save | docker load, or scripts/ensure-tenant-image) -- nothing is ever pulled"
                   % (image, self.docker_host))
        cpu = work.spec["resources"]["cpu"]
        if self.ncpu and cpu > self.ncpu * 1000:
            refuse("resources.cpu", "%d millicores is more than the %d CPU(s) of the Docker engine at %s (at most %d)"
                   % (cpu, self.ncpu, self.docker_host, self.ncpu * 1000))
        driver = work.spec["provider_config"]["log_driver"]
        if driver and self.log_drivers and driver not in self.log_drivers:
            refuse("provider_config.log_driver", "%r is not a log driver of the Docker engine at %s (it has: %s)"
                   % (driver, self.docker_host, ", ".join(sorted(self.log_drivers))))
        for name in (work.name, work.aside):
            if name in self.listing:
                why = ownership_problem(name, self.listing[name]["labels"], self.prefix, work.tenant_id, self.registry)
                if why:
                    refuse("tenant_id", why)
        for i, p in enumerate(work.spec["containers"][0]["ports"]):
            if not p["host_port"]:
                continue
            for ip, port, proto, other, other_tenant in taken:
                if port == p["host_port"] and proto == p["protocol"] and _overlap(ip, work.bind_address):
                    whose = " (tenant %r)" % other_tenant if other_tenant else ""
                    refuse("containers[0].ports[%d].host_port" % i,
                           "host port %d/%s on %s is already published by container %s%s on %s (%s:%d)"
                           % (port, proto, work.bind_address, other, whose, self.docker_host, ip or "*", port))
                    break
        if store is not None:
            record = store.get_tenant(work.tenant_id)
            if record is not None and record.get("status") != "destroyed":
                for field, mine in (("docker_host", self.docker_host), ("prefix", self.prefix)):
                    if record.get(field) not in (None, mine):
                        refuse(field, "the registry has this tenant live with %s %s (container %s); destroy it there "
                               "first (state=absent with that %s)" % (field, record[field], record.get("container_name"),
                                                                      field))
        return problems

    def _published_elsewhere(self, exclude):
        """(host ip, host port, protocol, container, tenant id) of every port published by a container not in
        ``exclude``: running containers' ports, and the bindings of stopped tenant containers (they come back)."""
        taken = []
        for name, c in sorted(self.listing.items()):
            if name in exclude:
                continue
            _prefix, tid = tenant_id_label(c["labels"])
            if c["state"] == "running":
                for p in c["ports"]:
                    if p.get("PublicPort"):
                        taken.append((p.get("IP") or "", int(p["PublicPort"]), p.get("Type") or "tcp", name, tid))
            elif tid is not None or c["labels"].get(ROLE_LABEL):
                for p in published_ports(self.inspect(name)):
                    if p["host_port"]:
                        taken.append((p["host_ip"], p["host_port"], p["protocol"], name, tid))
        return taken

    # ------------------------------------------------------------------ converge
    def load(self, works):
        """Each tenant's container as it is (and a previous one left aside by an interrupted run)."""
        for work in works:
            work.info = self.inspect(work.name) if work.name in self.listing else None
            work.aside_info = self.inspect(work.aside) if work.aside in self.listing else None
        return works

    def converge(self, works):
        """Plan and act on every tenant (loaded first), ``parallelism`` at a time."""
        with ThreadPoolExecutor(max_workers=max(1, min(self.parallelism, len(works) or 1))) as pool:
            list(pool.map(self._one, works))
        return works

    def _one(self, work):
        try:
            self._reconcile(work)
        except (APIError, OSError, TenantFailure) as exc:
            work.failed = True
            work.reason = work.reason or engine_reason(exc)
        except Exception as exc:  # never let one tenant's surprise take the others down
            work.failed = True
            work.reason = "unexpected %s: %s" % (type(exc).__name__, exc)
        if not self.check_mode:
            try:
                work.final = self.inspect(work.name)
            except APIError:
                work.final = None
        if work.failed:
            work.reason = "tenant %r (container %s): %s" % (work.tenant_id, work.name, work.reason)

    def _reconcile(self, work):
        info = work.info
        if work.aside_info is not None:
            # A run was killed mid-recreate: the container aside is the last one that proved itself.
            if info is not None:
                work.actions.append("remove %s (unproven, left by an interrupted run)" % work.name)
                if not self.check_mode:
                    self.api.remove_container(info["Id"], force=True)
            work.actions.append("restore %s as %s" % (work.aside, work.name))
            if not self.check_mode:
                self.api.rename(work.aside_info["Id"], work.name)
            info = work.aside_info
            work.info = info
        if info is None:
            work.actions.extend(["create", "start"])
            if self.check_mode:
                return
            self._create(work)
            checkpoints.reached("tenant_after_create")
            self._start_and_wait(work, record_action=False)
            return
        reasons = self.recreate_reasons(work, info)
        updates = self.limit_updates(work, info)
        changes = ["%s %s -> %s" % (k, before, after) for k, (before, after) in sorted(updates.items())]
        if reasons:
            work.actions.append("recreate (%s)" % "; ".join(reasons + changes))
            if not self.check_mode:
                self._recreate(work, info)
            return
        if updates:
            work.actions.append("update in place (%s)" % ", ".join(changes))
            if not self.check_mode:
                try:
                    self._update(info["Id"], work)
                except APIError as exc:
                    work.actions.append("recreate (the engine refused the update: %s)" % engine_reason(exc))
                    self._recreate(work, info)
                    return
        state = info.get("State") or {}
        if state.get("Paused"):
            work.actions.append("unpause")
            if not self.check_mode:
                self.api.unpause(info["Id"])
        elif not state.get("Running") and not state.get("Restarting"):
            work.actions.append("start")
            if not self.check_mode:
                self._start_and_wait(work, record_action=False)
        else:
            status = classify(info)
            if status["health"] == "unhealthy" or status["status"] == "starting":
                work.warnings.append("tenant %r: %s (%s); nothing in its spec changed, so it was left as it is"
                                     % (work.tenant_id, status["status"] if status["health"] != "unhealthy"
                                        else "unhealthy", status["reason"]))

    # ------------------------------------------------------------------ comparing
    def recreate_reasons(self, work, info):
        reasons = []
        if work.image_id and info.get("Image") != work.image_id:
            reasons.append("image %s: %s -> %s" % (work.spec["containers"][0]["image"], _short(info.get("Image")),
                                                   _short(work.image_id)))
        labels = (info.get("Config") or {}).get("Labels") or {}
        if labels.get(DIGEST_LABEL) != work.digest:
            try:
                before = json.loads(labels.get(SPEC_LABEL) or "")
            except ValueError:
                before = None
            after = json.loads(work.labels[SPEC_LABEL])
            if not isinstance(before, dict):
                reasons.append("spec")
            else:
                changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
                reasons.append(", ".join(changed) if changed else "env")  # masked env values: only the digest shows it
        elif self._bindings(info) != self._desired_bindings(work):
            reasons.append("published ports")
        return reasons

    @staticmethod
    def _bindings(info):
        return sorted((p["container_port"], p["protocol"], p["host_ip"], p["host_port"]) for p in published_ports(info))

    def _desired_bindings(self, work):
        return sorted((p["container_port"], p["protocol"], work.bind_address, p["host_port"])
                      for p in work.spec["containers"][0]["ports"] if p["host_port"])

    def limit_updates(self, work, info):
        """{field: (before, after)} of what ``docker update`` can change in place."""
        have = limits(info)
        want = dict(cpu=work.spec["resources"]["cpu"], memory=work.spec["resources"]["memory"],
                    memory_swap=work.spec["resources"]["memory"],
                    restart_policy=work.spec["provider_config"]["restart_policy"])
        return {k: (have[k], want[k]) for k in want if have[k] != want[k]}

    # ------------------------------------------------------------------ acting
    def _create(self, work, name=None):
        spec = work.spec
        c = spec["containers"][0]
        pc = spec["provider_config"]
        exposed, bindings = port_bindings(spec, work.bind_address)
        log_config = {"type": pc["log_driver"], "config": pc["log_options"]} if pc["log_driver"] else None
        host_config = self.api.create_host_config(
            nano_cpus=nano_cpus(spec),
            mem_limit=memory_bytes(spec),
            memswap_limit=memory_bytes(spec),
            restart_policy={"Name": "no"},  # the spec's policy once the container has proved itself
            port_bindings=bindings or None,
            log_config=log_config,
        )
        created = self.api.create_container(
            image=c["image"], name=name or work.name, hostname=work.name, command=docker_command(spec),
            environment=dict(c["env"]) or None, ports=exposed or None, labels=work.labels,
            healthcheck=healthcheck_api(pc["health_check"]), host_config=host_config, detach=True)
        # By reference (the preflight saw it present; creating never pulls): a tag moved since is seen next run.
        return created["Id"]

    def _update(self, container_id, work):
        """docker update: CPU (NanoCpus, which docker-py's update_container lacks), memory = swap, restart policy."""
        data = {"NanoCpus": nano_cpus(work.spec), "Memory": memory_bytes(work.spec),
                "MemorySwap": memory_bytes(work.spec),
                "RestartPolicy": restart_policy_api(work.spec["provider_config"]["restart_policy"])}
        response = self.api._post_json(self.api._url("/containers/{0}/update", container_id), data=data)
        self.api._raise_for_status(response)

    def _set_restart_policy(self, container, policy):
        response = self.api._post_json(self.api._url("/containers/{0}/update", container),
                                       data={"RestartPolicy": restart_policy_api(policy)})
        self.api._raise_for_status(response)

    def _start_and_wait(self, work, record_action=True):
        """Start without a restart policy, so that a container that does not come up stays exited with its exit
        code (and OOM flag) instead of being restarted; it gets the spec's policy once it has proved itself."""
        current = limits(self.inspect(work.name))["restart_policy"]
        if current != "no":
            self._set_restart_policy(work.name, "no")
        self.api.start(work.name)
        if record_action:
            work.actions.append("start")
        self._wait(work)
        policy = work.spec["provider_config"]["restart_policy"]
        if policy != "no":
            self._set_restart_policy(work.name, policy)

    def _wait(self, work):
        """Until the container proves itself: healthy (with a health check) or still running after
        ``start_settle`` seconds (without one). Raises TenantFailure saying why not."""
        started = time.monotonic()
        deadline = started + self.start_timeout
        while True:
            info = self.inspect(work.name)
            if info is None:
                raise TenantFailure("the container disappeared while starting")
            state = info.get("State") or {}
            status = classify(info)
            if state.get("Status") in ("exited", "dead") or state.get("Restarting"):
                raise TenantFailure("did not start: %s%s" % (status["reason"], self._logs(work.name)))
            if info.get("RestartCount"):  # exited, and its restart policy started it again: not a start
                raise TenantFailure("did not start: it exited and its restart policy restarted it (%d time(s))%s"
                                    % (info["RestartCount"], self._logs(work.name)))
            health = status["health"]
            if health == "healthy":
                return
            if health == "unhealthy":
                output = last_health_output(info) or "no output"
                raise TenantFailure("its health check failed (%s)%s" % (output, self._logs(work.name)))
            now = time.monotonic()
            if health == "none" and now - started >= self.start_settle:
                return
            if now >= deadline:
                raise TenantFailure("its health check still says %r after %gs (start_timeout)"
                                    % (health, self.start_timeout))
            time.sleep(0.25)

    def _logs(self, name):
        try:
            text = self.api.logs(name, tail=3).decode("utf-8", "replace").strip().replace("\n", " | ")
        except APIError:
            return ""
        return "; last log lines: %s" % text[-400:] if text else ""

    def _recreate(self, work, old):
        """New container first; the old one is removed only once the new one has proved itself."""
        old_id = old["Id"]
        old_running = bool((old.get("State") or {}).get("Running"))
        self.api.rename(old_id, work.aside)
        work.actions.append("rename the previous container to %s" % work.aside)
        checkpoints.reached("tenant_after_rename")
        try:
            self._create(work)
        except APIError:
            self.api.rename(old_id, work.name)
            work.actions.append("previous container renamed back")
            raise
        work.actions.append("create")
        stopped = False
        if old_running and self._shares_host_ports(old, work):
            self.api.stop(old_id, timeout=10)
            stopped = True
            work.actions.append("stop the previous container (it holds the same host ports)")
        checkpoints.reached("tenant_before_start")
        try:
            self._start_and_wait(work)
        except (TenantFailure, APIError) as exc:
            why = engine_reason(exc)
            work.rolled_back = True
            self._roll_back(work, old_id, old_running or stopped)
            raise TenantFailure("update rolled back, the previous container %s: the new container %s"
                                % ("runs again" if old_running or stopped else "is back", why))
        self.api.remove_container(old_id, force=True)
        work.actions.append("remove the previous container")

    def _roll_back(self, work, old_id, restart):
        """The new container goes, the previous one gets its name back (and runs again if it ran)."""
        try:
            self.api.remove_container(work.name, force=True)
            self.api.rename(old_id, work.name)
            work.actions.append("roll back: remove the new container, the previous one gets its name back")
            if restart:
                self.api.start(old_id)
                work.actions.append("roll back: start the previous container")
        except APIError as exc:
            raise TenantFailure("update failed and so did the rollback (%s); the previous container is %s"
                                % (engine_reason(exc), work.aside))
        if restart:
            try:
                self._wait(work)
            except TenantFailure as exc:
                raise TenantFailure("update failed, and the previous container, back under its name, %s" % exc)

    def _shares_host_ports(self, old, work):
        want = {(p["host_port"], p["protocol"]) for p in work.spec["containers"][0]["ports"] if p["host_port"]}
        return any((p["host_port"], p["protocol"]) in want for p in published_ports(old))

    # ------------------------------------------------------------------ removal
    def remove(self, tenant_ids):
        """Remove each tenant's container (and a previous one left aside): {tenant_id: [names removed]}."""
        removed = {tid: [] for tid in tenant_ids}
        jobs = [(tid, name) for tid in tenant_ids
                for name in (tenant_container_name(self.prefix, tid), tenant_aside_name(self.prefix, tid))
                if name in self.listing]
        errors = {}

        def one(job):
            tid, name = job
            if self.check_mode:
                removed[tid].append(name)
                return
            try:
                self.api.remove_container(self.listing[name]["id"], force=True)
                removed[tid].append(name)
            except NotFound:
                pass
            except APIError as exc:
                errors[tid] = "removing container %s failed: %s" % (name, engine_reason(exc))

        with ThreadPoolExecutor(max_workers=max(1, min(self.parallelism, len(jobs) or 1))) as pool:
            list(pool.map(one, jobs))
        return removed, errors

    # ------------------------------------------------------------------ views
    @staticmethod
    def view(info):
        """What a tenant's container is, in the spec's terms (for diffs and results); env values masked."""
        if info is None:
            return None
        labels = (info.get("Config") or {}).get("Labels") or {}
        try:
            spec_view = json.loads(labels.get(SPEC_LABEL) or "{}")
        except ValueError:
            spec_view = {}
        lim = limits(info)
        view = dict(container_name=(info.get("Name") or "").lstrip("/"), image=(info.get("Config") or {}).get("Image"),
                    image_id=_short(info.get("Image")))
        for key in ("name", "command", "args", "env", "ports", "bind_address", "log_driver", "log_options",
                    "health_check"):
            view[key] = spec_view.get(key)
        view.update(cpu=lim["cpu"], memory=lim["memory"], restart_policy=lim["restart_policy"],
                    status=classify(info)["status"])
        return view

    @staticmethod
    def desired_view(work, current_info=None):
        view = dict(container_name=work.name, image=work.spec["containers"][0]["image"],
                    image_id=_short(work.image_id))
        view.update({k: v for k, v in recreate_view(work.spec, work.bind_address).items() if k != "provider_type"})
        view["env"] = masked_env(work.spec["containers"][0]["env"])
        # A masked value that changed would look the same before and after: say that it changed.
        actual = _env_of(current_info)
        for key, value in work.spec["containers"][0]["env"].items():
            shown = mask_value(key, value)
            if MASK in shown and key in actual and actual[key] != value:
                view["env"][key] = shown + " (changed)"
        view.update(cpu=work.spec["resources"]["cpu"], memory=work.spec["resources"]["memory"],
                    restart_policy=work.spec["provider_config"]["restart_policy"], status="running")
        return view


def _env_of(info):
    out = {}
    for item in ((info or {}).get("Config") or {}).get("Env") or []:
        key, _sep, value = item.partition("=")
        out[key] = value
    return out


def _short(image_id):
    if not image_id:
        return image_id
    return image_id.split(":", 1)[-1][:12]
