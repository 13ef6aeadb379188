# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What fenrir.fleet.tenant and fenrir.fleet.tenant_info do, without Ansible.

Each function takes the module's validated params and a Docker client and returns the module's result,
or raises :class:`TenantRefused` (every problem found, each naming the tenant and the field) before
anything has changed. Records are kept in the fleet registry (tenant_store.open_store).
"""

from __future__ import annotations

import ipaddress

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (
    DockerException, connection_params, make_client)
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure, SpecError
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import tenant_container_name, validate_tenant_prefix
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_engine import (
    DIGEST_LABEL, TenantEngine, TenantWork, ownership_problem, tenant_id_label)
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import registry_location
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_spec import normalize_tenants, tenant_id_of
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_status import classify, limits, published_ports
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_store import is_live, open_store

DESTROY_REASON = "destroyed by fenrir.fleet.tenant state=absent"
# What tenant_info reports when the registry and the engine disagree (each tenant's ``drift``).
DRIFTS = (
    "not in registry",       # a container of this registry and prefix, but no live record
    "container missing",     # a live record, but no container
    "container id differs",  # the container is not the one the registry recorded (replaced behind its back)
)


class TenantRefused(FleetError):
    """Input or engine state that stops the whole call before any change."""

    kind = "tenant"

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("refused, nothing changed: " + "; ".join(str(p) for p in self.problems))

    def as_list(self):
        return [dict(tenant_id=p.label, field=p.field, message=p.bare_message) for p in self.problems]


# --------------------------------------------------------------------------- shared steps

def _settings(params):
    problems = []
    try:
        prefix = validate_tenant_prefix(params.get("prefix"))
    except SpecError as exc:
        raise TenantRefused([exc])
    registry = registry_location(params.get("registry"))
    bind = params.get("bind_address") or "0.0.0.0"
    try:
        ipaddress.ip_address(bind)
    except ValueError:
        problems.append(SpecError(None, "bind_address", "%r is not an IP address (0.0.0.0 = every interface)"
                                  % (bind,), kind="tenant"))
    if problems:
        raise TenantRefused(problems)
    return prefix, registry, bind


def _engine(params, client, check_mode, prefix, registry, bind):
    return TenantEngine(client, prefix, registry, bind_address=bind, check_mode=check_mode,
                        parallelism=params.get("parallelism") or 4,
                        start_timeout=params.get("start_timeout") or 60,
                        start_settle=params.get("start_settle") if params.get("start_settle") is not None else 2.0,
                        docker_host=connection_params(params)["base_url"]).survey()


def _ports_out(spec_ports, info, bind):
    """The spec's ports with where each is published ({host_ip, host_port} or host_port 0 = not published)."""
    published = {(p["container_port"], p["protocol"]): p for p in published_ports(info)} if info else {}
    out = []
    for p in spec_ports:
        pub = published.get((p["container_port"], p["protocol"]))
        if info is None and p["host_port"]:  # check mode, no container yet: where it would be published
            pub = dict(host_ip=bind, host_port=p["host_port"])
        out.append(dict(name=p.get("name"), container_port=p["container_port"], protocol=p["protocol"],
                        host_ip=pub["host_ip"] if pub else None, host_port=pub["host_port"] if pub else 0))
    return out


def _status_of(info):
    if info is None:
        return dict(status="absent", health="none", exit_code=None, reason="no container", oom_killed=False,
                    restart_count=0)
    return classify(info)


# --------------------------------------------------------------------------- state=present

def converge(params, client, check_mode=False, diff=False):
    """fenrir.fleet.tenant state=present: every tenant of ``tenants`` runs as specified, those of ``remove`` are
    destroyed first; every tenant's record in the registry says how it is."""
    prefix, registry, bind = _settings(params)
    problems = []
    specs = normalize_tenants(params.get("tenants") or [], prefix, problems)
    removing = _tenant_ids(params.get("remove") or [], prefix, problems, "remove")
    both = sorted(set(removing) & {s["tenant_id"] for s in specs})
    for tid in both:
        problems.append(SpecError(tid, "remove", "is also in tenants: a tenant is either kept or removed",
                                  kind="tenant"))
    if problems:
        raise TenantRefused(problems)

    engine = _engine(params, client, check_mode, prefix, registry, bind)
    works = engine.load([TenantWork(spec, prefix, registry, bind) for spec in specs])
    with open_store(params["registry"], params.get("key_file"), check_mode) as store:
        problems = engine.preflight(works, removing, store)
        if problems:
            raise TenantRefused(problems)
        removed = _destroy(engine, store, removing) if removing else []
        created = _record_new(engine, store, works)
        engine.converge(works)
        records = _record_results(engine, store, works, check_mode)

    results, before, after, warnings = [], {}, {}, []
    changed = any(r["changed"] for r in removed)
    for work in works:
        record, record_changed = records[work.tenant_id]
        tenant_changed = work.changed or record_changed or work.tenant_id in created
        changed = changed or tenant_changed
        warnings.extend(work.warnings)
        info = work.info if check_mode else work.final
        st = _status_of(info)
        lim = limits(info) if info else {}
        results.append(dict(
            tenant_id=work.tenant_id, container_name=work.name, container_id=(info or {}).get("Id"),
            image=work.spec["containers"][0]["image"], image_id=(info or {}).get("Image") or work.image_id,
            status=record["status"] if not check_mode else st["status"], health=st["health"],
            exit_code=st["exit_code"], reason=work.reason or st["reason"], oom_killed=st["oom_killed"],
            ports=_ports_out(work.spec["containers"][0]["ports"], info, bind),
            cpu=lim.get("cpu"), memory=lim.get("memory"), restart_policy=lim.get("restart_policy"),
            actions=list(work.actions), changed=tenant_changed, failed=work.failed, rolled_back=work.rolled_back,
            record=record))
        if work.changed and diff:
            before[work.tenant_id] = engine.view(work.info)
            after[work.tenant_id] = engine.desired_view(work, work.info)
    failed = [r["tenant_id"] for r in results if r["failed"]]
    out = dict(changed=changed, tenants=results, removed=removed, failed_tenants=failed,
               registry=dict(location=registry), prefix=prefix, docker_host=engine.docker_host, warnings=warnings)
    if diff:
        for r in removed:
            if r["changed"]:
                before[r["tenant_id"]] = r.pop("_view", None)
                after[r["tenant_id"]] = None
    for r in removed:
        r.pop("_view", None)
    if diff:
        out["diff"] = dict(before=before, after=after)
    if failed:
        out["msg"] = "%d of %d tenant(s) failed: %s" % (len(failed), len(results), "; ".join(
            w.reason for w in works if w.failed))
    return out


def _record_new(engine, store, works):
    """Tenants without a live record whose container is about to be made are recorded ``provisioning`` first (one
    transaction): a container of this registry never exists without its record, even when the run is killed.
    Returns the tenant ids recorded."""
    new = [w for w in works if w.info is None and w.aside_info is None and not is_live(store.get_tenant(w.tenant_id))]
    if new:
        with store.transaction():
            for work in new:
                store.put_tenant(work.tenant_id, spec=work.spec, prefix=engine.prefix,
                                 docker_host=engine.docker_host, container_name=work.name, container_id=None,
                                 image=work.spec["containers"][0]["image"], image_id=work.image_id,
                                 status="provisioning", reason=None, exit_code=None)
    return {w.tenant_id for w in new}


def _record_results(engine, store, works, check_mode):
    """Every tenant's record as this run leaves it (in check mode: would leave it, on the registry's private
    copy), in one transaction. Returns {tenant_id: (record, changed)}."""
    records = {}
    if not works:
        return records
    with store.transaction():
        for work in works:
            spec, fields = _record_after(engine, work, check_mode)
            records[work.tenant_id] = store.put_tenant(work.tenant_id, spec=spec, **fields)
    return records


def _record_after(engine, work, check_mode):
    """(spec, fields) of the record this run leaves (or, in check mode, would leave) for a tenant; spec None keeps
    the registry's (a rollback: the previous spec is still in force)."""
    base = dict(prefix=engine.prefix, docker_host=engine.docker_host, container_name=work.name,
                image=work.spec["containers"][0]["image"])
    if check_mode:
        info = work.info
        if work.changed or info is None:
            new_container = info is None or any(a.startswith(("create", "recreate")) for a in work.actions)
            return work.spec, dict(base, container_id=None if new_container else info["Id"], image_id=work.image_id,
                                   status="running", reason=None, exit_code=None)
        st = classify(info)
        return work.spec, dict(base, container_id=info["Id"], image_id=info.get("Image"), status=st["status"],
                               reason=st["reason"], exit_code=st["exit_code"])
    info = work.final
    if info is None:
        return work.spec, dict(base, container_id=None, image_id=work.image_id, status="failed", reason=work.reason,
                               exit_code=None)
    st = classify(info)
    if work.rolled_back:
        return None, dict(base, container_id=info["Id"], image=(info.get("Config") or {}).get("Image"),
                          image_id=info.get("Image"), status=st["status"], reason=work.reason,
                          exit_code=st["exit_code"])
    return work.spec, dict(base, container_id=info["Id"], image_id=info.get("Image"),
                           status="failed" if work.failed else st["status"],
                           reason=work.reason if work.failed else st["reason"], exit_code=st["exit_code"])


def _tenant_ids(raws, prefix, problems, field):
    ids = []
    for raw in raws:
        try:
            tid = tenant_id_of(raw, prefix)
        except SpecError as exc:
            problems.append(SpecError(exc.label, field if not isinstance(raw, dict) else exc.field, exc.bare_message,
                                      kind="tenant"))
            continue
        if tid in ids:
            problems.append(SpecError(tid, field, "given twice", kind="tenant"))
            continue
        ids.append(tid)
    return ids


# --------------------------------------------------------------------------- state=absent

def _destroy(engine, store, tenant_ids):
    """Remove the tenants' containers (in parallel), then mark their records destroyed (one transaction)."""
    views = {tid: engine.view(engine.inspect(tenant_container_name(engine.prefix, tid)))
             if tenant_container_name(engine.prefix, tid) in engine.listing else None for tid in tenant_ids}
    removed, errors = engine.remove(tenant_ids)
    out = []
    with store.transaction():
        for tid in tenant_ids:
            record = store.get_tenant(tid)
            destroyed = False
            if is_live(record) and tid not in errors:
                record, destroyed = store.destroy_tenant(tid, DESTROY_REASON)
            out.append(dict(tenant_id=tid, container_name=tenant_container_name(engine.prefix, tid),
                            removed=sorted(removed[tid]), destroyed=destroyed,
                            status="destroyed" if (destroyed or removed[tid]) else "absent",
                            changed=bool(removed[tid]) or destroyed, failed=tid in errors, reason=errors.get(tid),
                            record=record, _view=views[tid]))
    return out


def destroy(params, client, check_mode=False, diff=False):
    """fenrir.fleet.tenant state=absent: the tenants' containers removed, their records destroyed."""
    prefix, registry, bind = _settings(params)
    problems = []
    tenant_ids = _tenant_ids(params.get("tenants") or [], prefix, problems, "tenants")
    if problems:
        raise TenantRefused(problems)
    engine = _engine(params, client, check_mode, prefix, registry, bind)
    with open_store(params["registry"], params.get("key_file"), check_mode) as store:
        problems = engine.preflight([], tenant_ids, store)
        if problems:
            raise TenantRefused(problems)
        results = _destroy(engine, store, tenant_ids)
    out = dict(changed=any(r["changed"] for r in results), tenants=results,
               failed_tenants=[r["tenant_id"] for r in results if r["failed"]],
               registry=dict(location=registry), prefix=prefix, docker_host=engine.docker_host)
    if diff:
        out["diff"] = dict(before={r["tenant_id"]: r["_view"] for r in results if r["changed"]},
                           after={r["tenant_id"]: None for r in results if r["changed"]})
    for r in results:
        r.pop("_view", None)
    if out["failed_tenants"]:
        out["msg"] = "; ".join("tenant %r: %s" % (r["tenant_id"], r["reason"]) for r in results if r["failed"])
    return out


# --------------------------------------------------------------------------- tenant_info

def _drift(record, info):
    """How the registry's record and the engine's container disagree (see DRIFTS)."""
    if info is not None and not is_live(record):
        return ["not in registry"]
    if info is None and is_live(record):
        return ["container missing"]
    if info is not None and record.get("container_id") and record["container_id"] != info.get("Id"):
        return ["container id differs"]
    return []


def status(params, client):
    """fenrir.fleet.tenant_info: every tenant of this prefix and registry on the engine -- its container, or its live
    record on this engine (or those asked for) -- classified from ``docker inspect``, beside its record, with the
    drift between them. Reads only: the registry is opened as a private copy."""
    prefix, registry, bind = _settings(params)
    problems = []
    wanted = _tenant_ids(params.get("tenant_ids") or [], prefix, problems, "tenant_ids") if params.get(
        "tenant_ids") else None
    if problems:
        raise TenantRefused(problems)
    engine = _engine(params, client, True, prefix, registry, bind)
    ours = engine.our_containers()
    with open_store(params["registry"], params.get("key_file"), check_mode=True) as store:
        if wanted is None:
            records = {r["tenant_id"]: r for r in store.tenants()
                       if r["prefix"] in (None, prefix) and r["docker_host"] in (None, engine.docker_host)}
            ids = sorted(set(ours) | {tid for tid, r in records.items() if is_live(r)})
        else:
            records = {tid: store.get_tenant(tid) for tid in wanted}
            ids = sorted(wanted)
    results = []
    for tid in ids:
        info = engine.inspect(ours[tid][0]) if tid in ours else None
        record = records.get(tid)
        st = _status_of(info)
        drift = _drift(record, info)
        if "container missing" in drift:
            st = dict(st, status="failed", reason="container %s is missing (removed outside fenrir.fleet?)"
                      % tenant_container_name(prefix, tid))
        labels = ((info or {}).get("Config") or {}).get("Labels") or {}
        view = engine.view(info) if info else {}
        lim = limits(info) if info else {}
        results.append(dict(
            tenant_id=tid, container_name=tenant_container_name(prefix, tid), container_id=(info or {}).get("Id"),
            image=view.get("image"), image_id=(info or {}).get("Image"), status=st["status"], health=st["health"],
            exit_code=st["exit_code"], reason=st["reason"], oom_killed=st["oom_killed"],
            restart_count=st["restart_count"], started_at=st.get("started_at"), finished_at=st.get("finished_at"),
            ports=_ports_out(view.get("ports") or [], info, bind) if info else [],
            cpu=lim.get("cpu"), memory=lim.get("memory"), restart_policy=lim.get("restart_policy"),
            spec_digest=labels.get(DIGEST_LABEL), previous_left_aside=tenant_container_name(prefix, tid) + ".previous"
            in engine.listing, registry_status=(record or {}).get("status"), drift=drift, record=record))
    foreign = []
    for name, c in sorted(engine.listing.items()):
        theirs_prefix, tid = tenant_id_label(c["labels"])
        if theirs_prefix == prefix and tid is not None and tid not in ours:
            why = ownership_problem(name, c["labels"], prefix, tid, registry)
            if why and not name.endswith(".previous"):
                foreign.append(dict(container_name=name, tenant_id=tid, reason=why))
    summary = {}
    for r in results:
        summary[r["status"]] = summary.get(r["status"], 0) + 1
    drifted = [r["tenant_id"] for r in results if r["drift"]]
    return dict(changed=False, tenants=results, foreign=foreign, summary=summary, drifted=drifted,
                in_sync=not drifted, registry=dict(location=registry), prefix=prefix, docker_host=engine.docker_host)


# --------------------------------------------------------------------------- the modules' run()

def run_operation(params, operation, *args):
    """What the tenant modules' ``run()`` does around ``operation(params, client, *args)``: the engine's client
    made from the connection options (their warnings added to the result), a refusal with every problem, a
    registry or Docker error as a message (never a traceback), failed tenants failing the task with every
    tenant's result."""
    try:
        conn = connection_params(params)
        client = make_client(params, max_pool_size=max(8, params.get("parallelism") or 0), conn=conn)
        result = operation(params, client, *args)
    except TenantRefused as exc:
        raise ModuleFailure(str(exc), dict(problems=exc.as_list(), changed=False))
    except (FleetError, ValueError) as exc:
        raise ModuleFailure(str(exc), dict(changed=False))
    except DockerException as exc:
        raise ModuleFailure("Docker engine error: %s" % exc, dict(changed=False))
    result["warnings"] = list(conn["warnings"]) + list(result.get("warnings") or [])
    if not result["warnings"]:
        del result["warnings"]
    if result.get("failed_tenants"):
        raise ModuleFailure(result.pop("msg"), result)
    return result
