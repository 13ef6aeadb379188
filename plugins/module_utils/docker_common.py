# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker client built from the connection options (defined, with their rules, in docker_options.py), and
what every Docker-facing module does around its work: the SDK's exceptions, a clear failure when the SDK is missing
or the engine refuses.
"""

from __future__ import annotations

import contextlib
import traceback
from urllib.parse import urlparse

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_options import (
    DOCKER_COMMON_ARGS, DockerOptionsError, connection_params, docker_argument_spec)
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure

# The SDK's exceptions are the ones every Docker-facing module catches; importing them from here keeps modules
# importable (and their errors clear) without the SDK. The options are re-exported: a module imports what it needs
# for the engine from this one file.
__all__ = ("APIError", "DOCKER_COMMON_ARGS", "DockerException", "DockerOptionsError", "HAS_DOCKER", "NotFound",
           "connection_params", "docker_argument_spec", "engine_failures", "make_client", "require_docker",
           "run_with_engine")

try:
    import docker
    from docker.errors import APIError, DockerException, NotFound
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised only without the SDK
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()

    class DockerException(Exception):
        """Stands in for docker.errors.DockerException when the SDK is missing."""

    class APIError(DockerException):
        """Stands in for docker.errors.APIError."""

    class NotFound(APIError):
        """Stands in for docker.errors.NotFound."""


def _hostname_adapter(hostname, pool_size):
    """An HTTPS transport that checks the engine's certificate against ``hostname`` (tls_hostname), not
    against the address dialled: a daemon bound to an address, its certificate issued to a name."""
    import requests

    class HostnameAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            kwargs["assert_hostname"] = hostname
            kwargs["server_hostname"] = hostname
            super().init_poolmanager(*args, **kwargs)

    return HostnameAdapter(pool_connections=pool_size, pool_maxsize=pool_size)


def make_client(params, max_pool_size=16, conn=None):
    """A docker.DockerClient for the connection options (``conn``: their resolution, when done already)."""
    conn = dict(conn or connection_params(params))
    tls_config = False
    rename = None
    base_url = conn["base_url"]
    if conn["tls"]:
        t = conn["tls"]
        client_cert = (t["client_cert"], t["client_key"]) if t["client_cert"] else None
        tls_config = docker.tls.TLSConfig(
            client_cert=client_cert,
            ca_cert=t["ca_cert"],
            verify=t["ca_cert"] if t["verify"] else False,
        )
        base_url = base_url.replace("tcp://", "https://", 1)
        if t["verify"] and t["assert_hostname"] != urlparse(base_url).hostname:
            rename = t["assert_hostname"]
    kwargs = dict(base_url=base_url, tls=tls_config, timeout=conn["timeout"], max_pool_size=max_pool_size)
    try:
        if not conn["tls"]:
            return docker.DockerClient(version="auto", **kwargs)
        # The transport must be set up before the first request (the API version check): the CA given
        # must be the one used -- requests would otherwise take REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the
        # environment over it -- and, with tls_hostname, the name the certificate is checked against.
        version = docker.constants.DEFAULT_DOCKER_API_VERSION
        for _attempt in range(2):
            client = docker.DockerClient(version=version, **kwargs)
            client.api.trust_env = False
            if rename is not None:
                client.api.mount("https://", _hostname_adapter(rename, max_pool_size))
            served = client.api.version(api_version=False)["ApiVersion"]
            if not docker.utils.version_lt(served, version):
                return client
            version = served  # an older engine: speak its version
        return client
    except (DockerException, OSError) as exc:  # OSError: requests' connection and TLS errors
        raise DockerException("cannot reach the Docker engine at %s (is it running? see scripts/ensure-docker; with "
                              "TLS: ca_path, client_cert/client_key, tls_hostname): %s" % (base_url, exc))


@contextlib.contextmanager
def engine_failures():
    """Around a module's work: a refusal (FleetError) or an engine error becomes a ModuleFailure with a clear
    message, never a traceback."""
    try:
        yield
    except FleetError as exc:
        raise ModuleFailure(str(exc), getattr(exc, "result", None))
    except DockerException as exc:
        raise ModuleFailure("Docker engine error: %s" % exc)


def run_with_engine(params, work, max_pool_size=16, diff=True):
    """What a Docker-facing module's ``run()`` does around its work: resolve the connection options, make the
    client, call ``work(client)`` for the result; a refusal (FleetError) or an engine error becomes a
    ModuleFailure with a clear message, the options' warnings are added to the result, and without ``diff`` the
    result carries none."""
    with engine_failures():
        conn = connection_params(params)
        result = work(make_client(params, max_pool_size=max_pool_size, conn=conn))
    if not diff:
        result.pop("diff", None)
    if conn["warnings"]:
        result["warnings"] = list(conn["warnings"]) + list(result.get("warnings") or [])
    return result


def require_docker(module):
    """Fail a module cleanly when the Docker SDK for Python is missing."""
    if not HAS_DOCKER:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("docker (the Docker SDK for Python)"), exception=DOCKER_IMPORT_ERROR)
