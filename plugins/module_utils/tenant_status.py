# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tenant's status, read from its container as ``docker inspect`` shows it (no Docker calls here).

======== =====================================================================================
running  the container runs (health may still be ``unhealthy``: reported, never assumed)
starting the container is restarting, or runs and its health check says ``starting``
stopped  exited with code 0, paused, or created and never started
failed   exited with a non-zero code, killed for memory (OOMKilled), or dead -- with exit code and reason
======== =====================================================================================

``health`` is Docker's own (``healthy``, ``unhealthy``, ``starting``) or ``none`` when the container has
no health check; it is never inferred from the container running.

``oom_killed`` is Docker's ``State.OOMKilled``. Some engines never set it (Docker 20.10 with cgroup v1 on
recent kernels: the kernel kills the process at the memory limit, Docker sees only exit code 137), so an
exit code 137 without the flag is reported as a SIGKILL that the memory limit is the likely cause of.
"""

from __future__ import annotations

import signal

from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_spec import (
    MIB, NANOCPUS_PER_MILLICORE, restart_policy_text)

HEALTHS = ("healthy", "unhealthy", "starting", "none")


def classify(info):
    """{status, health, exit_code, reason, oom_killed, restart_count, state, started_at, finished_at}."""
    state = (info or {}).get("State") or {}
    docker_status = state.get("Status") or "unknown"
    health_state = state.get("Health") or {}
    health = health_state.get("Status") or "none"
    if health not in HEALTHS:
        health = "none"
    exit_code = state.get("ExitCode")
    restart_count = info.get("RestartCount") or 0
    oom = bool(state.get("OOMKilled"))
    error = (state.get("Error") or "").strip()
    reason = None
    if docker_status == "running" and not state.get("Restarting"):
        status = "starting" if health == "starting" else "running"
        exit_code = None
        if health == "unhealthy":
            reason = "health check failing: %s" % (last_health_output(info) or "no output")
        elif health == "starting":
            reason = "health check not passed yet"
    elif docker_status == "restarting" or state.get("Restarting"):
        status = "starting"
        reason = "restarting (restart %d) after it %s" % (restart_count, _exit_text(info, exit_code, oom, error))
    elif docker_status == "exited":
        if exit_code == 0 and not oom:
            status, reason = "stopped", "exited with code 0"
        else:
            status, reason = "failed", _exit_text(info, exit_code, oom, error)
    elif docker_status == "dead":
        status = "failed"
        reason = "dead (Docker could not stop or remove it)%s" % (": " + error if error else "")
    elif docker_status == "paused":
        status, reason, exit_code = "stopped", "paused", None
    elif docker_status == "created":
        status = "stopped"
        reason = "created, never started%s" % (": " + error if error else "")
        exit_code = None if not error else exit_code
    elif docker_status == "removing":
        status, reason = "stopped", "being removed"
    else:
        status, reason = "failed", "unknown container state %r" % docker_status
    return dict(status=status, health=health, exit_code=exit_code, reason=reason, oom_killed=oom,
                restart_count=restart_count, state=docker_status, started_at=state.get("StartedAt"),
                finished_at=state.get("FinishedAt"))


def _exit_text(info, exit_code, oom, error):
    memory = ((info or {}).get("HostConfig") or {}).get("Memory") or 0
    limit = " of %d MB" % (memory // MIB) if memory else ""
    if oom:
        text = "was killed for exceeding its memory limit%s (OOMKilled, exit code %s)" % (limit, exit_code)
    elif exit_code == 137:
        text = ("was killed by SIGKILL (exit code 137): what the kernel's OOM killer does at the memory limit%s "
                "(the engine did not flag it OOMKilled; docker kill does the same)" % limit)
    elif isinstance(exit_code, int) and 128 < exit_code < 128 + 65:
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = "signal %d" % (exit_code - 128)
        text = "exited with code %d (%s)" % (exit_code, name)
    else:
        text = "exited with code %s" % exit_code
    return text + (": " + error if error else "")


def last_health_output(info):
    log = (((info or {}).get("State") or {}).get("Health") or {}).get("Log") or []
    if not log:
        return None
    last = log[-1]
    output = (last.get("Output") or "").strip().replace("\n", " | ")
    return "exit %s%s" % (last.get("ExitCode"), ", " + output[:200] if output else "")


def published_ports(info):
    """The container's published ports: [{container_port, protocol, host_ip, host_port}] from its HostConfig
    (what it publishes whenever it runs), sorted."""
    bindings = (((info or {}).get("HostConfig") or {}).get("PortBindings")) or {}
    out = []
    for key, binds in bindings.items():
        port, _sep, proto = key.partition("/")
        for b in binds or []:
            host_port = (b or {}).get("HostPort") or ""
            out.append(dict(container_port=int(port), protocol=proto or "tcp", host_ip=(b or {}).get("HostIp") or "",
                            host_port=int(host_port) if host_port.isdigit() else 0))
    return sorted(out, key=lambda p: (p["container_port"], p["protocol"], p["host_ip"]))


def limits(info):
    """{cpu (millicores), memory (MB), memory_swap (MB), restart_policy} of a container, in the spec's units."""
    host = (info or {}).get("HostConfig") or {}
    nano, mem, swap = host.get("NanoCpus") or 0, host.get("Memory") or 0, host.get("MemorySwap") or 0
    return dict(cpu=nano // NANOCPUS_PER_MILLICORE if nano else None, memory=mem // MIB if mem else None,
                memory_swap=swap // MIB if swap > 0 else swap or None,
                restart_policy=restart_policy_text(host.get("RestartPolicy")))
