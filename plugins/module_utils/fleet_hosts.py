# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet's Docker engines: the controller's own (``local``) and the managed Docker hosts, as one option.

A module that works on several engines at once takes ``engines``: one entry per engine, as
``fenrir.fleet.fleet_placement`` returns them (name, endpoint, the controller's client certificate, the host's
address and ``fenrir-fleet`` subnet).  The entry named ``local`` -- or any entry without an endpoint -- is the
engine of the module's own connection options.  An entry with a ``problem`` (a host without an endpoint, never
proven) is not dialled: its nodes fail with that problem.

:func:`connect_engines` connects to all of them at once; an engine that cannot be reached is a reason for *its*
nodes to fail, never the others'.  :func:`per_engine` runs one function per engine on threads;
:func:`on_each_engine` does one piece of work on every engine, each with a client of its own.
"""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import APIError, DockerException, make_client
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import LOCAL_ENGINE

# Seconds a managed host has to accept a TCP connection before it is unreachable (its API calls then get the
# engine's own timeout).
CONNECT_TIMEOUT = 10

ENGINE_OPTIONS = dict(
    name=dict(type="str", required=True),
    docker_host=dict(type="str"),
    ca_path=dict(type="path"),
    client_cert=dict(type="path"),
    client_key=dict(type="path", no_log=False),
    tls_hostname=dict(type="str"),
    timeout=dict(type="int"),
    address=dict(type="str"),
    subnet=dict(type="str"),
    gateway=dict(type="str"),
    status=dict(type="str"),
    images=dict(type="list", elements="str"),
    nodes=dict(type="list", elements="str"),
    problem=dict(type="str"),
)


def engines_argument_spec():
    """``engines`` and ``failed_engines`` (a fresh copy each time)."""
    return dict(
        engines=dict(type="list", elements="dict", options={k: dict(v) for k, v in ENGINE_OPTIONS.items()}),
        failed_engines=dict(type="dict", default={}),
    )


def is_local(engine):
    return engine.get("name") == LOCAL_ENGINE or not engine.get("docker_host")


def engine_name(docker_host):
    """The engine name of a registry ``docker_host`` value (None = the local engine)."""
    return docker_host or LOCAL_ENGINE


def engine_params(params, engine):
    """Connection options for one engine: the module's own for the local engine, mutual TLS to a managed host
    with the controller's client certificate otherwise (the host's certificate verified against the fleet CA)."""
    if is_local(engine):
        return params
    return dict(docker_host=engine["docker_host"], tls=True, validate_certs=True, ca_path=engine.get("ca_path"),
                client_cert=engine.get("client_cert"), client_key=engine.get("client_key"),
                tls_hostname=engine.get("tls_hostname"), insecure=False,
                timeout=engine.get("timeout") or params.get("timeout") or 60)


def describe(exc):
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def reachable(endpoint, timeout):
    """Open (and close) a TCP connection to a ``tcp://host:port`` endpoint: a host that is gone answers nothing, and
    a client would otherwise wait its whole API timeout before saying so."""
    parsed = urlparse(endpoint)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
        pass


def connect(params, engine, max_pool_size=16):
    """A client for one engine; raises FleetError naming the host when it cannot be reached (a managed host that
    does not accept a TCP connection within CONNECT_TIMEOUT seconds is unreachable)."""
    if engine.get("problem"):
        raise FleetError(engine["problem"], label=engine["name"], kind="Docker host")
    try:
        if not is_local(engine):
            reachable(engine["docker_host"], min(CONNECT_TIMEOUT, engine.get("timeout") or CONNECT_TIMEOUT))
        return make_client(engine_params(params, engine), max_pool_size=max_pool_size)
    except (DockerException, FleetError, OSError) as exc:
        raise FleetError("unreachable: %s" % describe(exc), label=engine["name"], kind="Docker host")


def connect_engines(params, engines, max_pool_size=16, skip=None):
    """Connect to every engine at once: ``({name: client}, {name: reason})``.  ``skip``: {name: reason} of
    engines that failed an earlier step (not dialled)."""
    skip = dict(skip or {})
    clients, failed = {}, {}

    def one(engine):
        name = engine["name"]
        if name in skip:
            failed[name] = skip[name]
            return
        try:
            clients[name] = connect(params, engine, max_pool_size)
        except FleetError as exc:
            failed[name] = str(exc)

    per_engine(engines, one)
    return clients, failed


def per_engine(engines, fn):
    """``fn(engine)`` for every engine, all at once; returns the results in order."""
    engines = list(engines or [])
    if not engines:
        return []
    if len(engines) == 1:
        return [fn(engines[0])]
    with ThreadPoolExecutor(max_workers=len(engines)) as pool:
        return list(pool.map(fn, engines))


def on_each_engine(params, engines, work, skip=None):
    """``work(engine, client)`` on every engine at once, each with a client of its own (closed afterwards):
    ``({name: result}, {name: reason})``.  An engine in ``skip`` ({name: reason}: it failed an earlier step) is not
    dialled; one that cannot be reached, refuses (FleetError) or whose engine errs gets a reason naming the Docker
    host, and never fails the others."""
    failed = {name: host_reason(name, reason) for name, reason in (skip or {}).items()}
    results = {}
    lock = threading.Lock()

    def one(engine):
        name = engine["name"]
        if name in failed:
            return
        try:
            client = connect(params, engine)
        except FleetError as exc:
            with lock:
                failed[name] = str(exc)
            return
        try:
            got = work(engine, client)
            with lock:
                results[name] = got
        except FleetError as exc:
            with lock:
                failed[name] = host_reason(name, exc.message)
        except (APIError, DockerException, OSError) as exc:
            with lock:
                failed[name] = host_reason(name, describe(exc))
        finally:
            client.close()

    per_engine(engines, one)
    return results, failed


def close_all(clients):
    for client in clients.values():
        try:
            client.close()
        except Exception:  # pragma: no cover - closing a broken connection
            pass


def host_reason(name, reason):
    """A node's reason when its Docker host failed: always names the host."""
    text = str(reason)
    prefix = "Docker host %r" % name
    return text if text.startswith(prefix) else "%s: %s" % (prefix, text)
