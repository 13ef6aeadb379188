# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One definition of the Docker connection options and the client built from them."""

from __future__ import annotations

import os
import traceback
from urllib.parse import urlparse

try:
    import docker
    from docker.errors import APIError, DockerException, NotFound, ImageNotFound
    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised only without the SDK
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()
    APIError = DockerException = NotFound = ImageNotFound = Exception

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

DOCKER_COMMON_ARGS = dict(
    docker_host=dict(type="str", aliases=["docker_url"]),
    tls=dict(type="bool", default=False),
    validate_certs=dict(type="bool", default=False, aliases=["tls_verify"]),
    ca_path=dict(type="path", aliases=["ca_cert", "tls_ca_cert", "cacert_path"]),
    client_cert=dict(type="path", aliases=["tls_client_cert", "cert_path"]),
    client_key=dict(type="path", aliases=["tls_client_key", "key_path"]),
    tls_hostname=dict(type="str"),
    timeout=dict(type="int", default=60),
)


def docker_argument_spec(**extra):
    """The shared connection options plus a module's own."""
    spec = {k: dict(v) for k, v in DOCKER_COMMON_ARGS.items()}
    spec.update(extra)
    return spec


def _env_bool(name, environ=None):
    value = (os.environ if environ is None else environ).get(name, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


def connection_params(params, environ=None):
    """Resolve the connection options against DOCKER_* environment fallbacks.

    Returns a plain dict: base_url, tls (False or dict of TLS settings), timeout.
    """
    env = os.environ if environ is None else environ
    base_url = params.get("docker_host") or env.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    verify = bool(params.get("validate_certs")) or (env.get("DOCKER_TLS_VERIFY", "").strip() not in ("", "0"))
    use_tls = verify or bool(params.get("tls")) or _env_bool("DOCKER_TLS", env)
    cert_path = env.get("DOCKER_CERT_PATH")

    def pick(option, filename):
        if params.get(option):
            return params[option]
        if cert_path:
            candidate = os.path.join(cert_path, filename)
            if os.path.exists(candidate):
                return candidate
        return None

    tls = False
    if use_tls:
        if base_url.startswith("unix://"):
            raise ValueError("docker_host %s is a Unix socket; TLS options need a tcp:// address" % base_url)
        tls = dict(
            verify=verify,
            ca_cert=pick("ca_path", "ca.pem"),
            client_cert=pick("client_cert", "cert.pem"),
            client_key=pick("client_key", "key.pem"),
            assert_hostname=params.get("tls_hostname") or urlparse(base_url.replace("tcp://", "https://")).hostname,
        )
        if verify and not tls["ca_cert"]:
            raise ValueError("validate_certs is set but no ca_path was given (nor DOCKER_CERT_PATH/ca.pem)")
        if bool(tls["client_cert"]) != bool(tls["client_key"]):
            raise ValueError("client_cert and client_key must be given together")
    return dict(base_url=base_url, tls=tls, timeout=params.get("timeout") or 60)


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


def make_client(params, max_pool_size=16):
    """A docker.DockerClient for the resolved connection options."""
    conn = connection_params(params)
    tls_config = False
    rename = None
    if conn["tls"]:
        t = conn["tls"]
        client_cert = (t["client_cert"], t["client_key"]) if t["client_cert"] else None
        tls_config = docker.tls.TLSConfig(
            client_cert=client_cert,
            ca_cert=t["ca_cert"],
            verify=t["ca_cert"] if t["verify"] else False,
        )
        conn["base_url"] = conn["base_url"].replace("tcp://", "https://", 1)
        if t["verify"] and t["assert_hostname"] != urlparse(conn["base_url"]).hostname:
            rename = t["assert_hostname"]
    kwargs = dict(base_url=conn["base_url"], tls=tls_config, timeout=conn["timeout"], max_pool_size=max_pool_size)
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
                              "TLS: ca_path, client_cert/client_key, tls_hostname): %s" % (conn["base_url"], exc))


def require_docker(module):
    if not HAS_DOCKER:
        from ansible.module_utils.basic import missing_required_lib
        module.fail_json(msg=missing_required_lib("docker (the Docker SDK for Python)"), exception=DOCKER_IMPORT_ERROR)
