# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One definition of the Docker connection options, the rules they must follow, and the client built from them.

Every module that talks to a Docker engine extends :data:`DOCKER_COMMON_ARGS` (documented once, in the
``fenrir.fleet.docker`` doc fragment). The rules are strict because the engine is handed node identities:

* only ``unix://``, ``tcp://`` and ``https://`` addresses (``http://`` would send them in clear);
* TLS options with a Unix socket are refused (they would be silently ignored);
* plain ``tcp://`` to anything but loopback is refused unless ``insecure: true``;
* ``tls`` without ``validate_certs`` encrypts without knowing who answers: allowed only when asked for, with a
  warning;
* ``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` mean what they mean to the Docker SDK and CLI: any non-empty
  ``DOCKER_TLS_VERIFY`` turns verification on, ``DOCKER_CERT_PATH`` holds ``ca.pem``, ``cert.pem``, ``key.pem``;
* ``FENRIR_DOCKER_CA_CERT``, ``FENRIR_DOCKER_CLIENT_CERT``, ``FENRIR_DOCKER_CLIENT_KEY`` name the three files one by
  one (an AWX credential's file injectors write them under names of their own, not into one directory).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import traceback
from urllib.parse import urlparse

from ansible.module_utils.basic import env_fallback

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure

# The SDK's exceptions are the ones every Docker-facing module catches; importing them from here keeps modules
# importable (and their errors clear) without the SDK.
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

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
SCHEMES = ("unix", "tcp", "https")

DOCKER_COMMON_ARGS = dict(
    docker_host=dict(type="str", default=DEFAULT_DOCKER_HOST, aliases=["docker_url"],
                     fallback=(env_fallback, ["DOCKER_HOST"])),
    tls=dict(type="bool", default=False, fallback=(env_fallback, ["DOCKER_TLS"])),
    # None: DOCKER_TLS_VERIFY decides, as it does for the SDK (a non-empty value, even "0", turns it on).
    validate_certs=dict(type="bool", aliases=["tls_verify"]),
    ca_path=dict(type="path", aliases=["ca_cert", "tls_ca_cert", "cacert_path"]),
    client_cert=dict(type="path", aliases=["tls_client_cert", "cert_path"]),
    client_key=dict(type="path", aliases=["tls_client_key", "key_path"]),
    tls_hostname=dict(type="str", fallback=(env_fallback, ["DOCKER_TLS_HOSTNAME"])),
    timeout=dict(type="int", default=60, fallback=(env_fallback, ["DOCKER_TIMEOUT"])),
    insecure=dict(type="bool", default=False),
)
TLS_OPTIONS = ("tls", "validate_certs", "ca_path", "client_cert", "client_key", "tls_hostname")
# The TLS files one by one, from the environment: option -> (variable, file name in DOCKER_CERT_PATH).
TLS_FILES = dict(ca_path=("FENRIR_DOCKER_CA_CERT", "ca.pem"), client_cert=("FENRIR_DOCKER_CLIENT_CERT", "cert.pem"),
                 client_key=("FENRIR_DOCKER_CLIENT_KEY", "key.pem"))


class DockerOptionsError(FleetError):
    """Connection options that cannot be used as given."""

    def __init__(self, message, field=None):
        super().__init__(message, field=field)


def docker_argument_spec(**extra):
    """The shared connection options plus a module's own (a fresh copy each time)."""
    spec = {k: dict(v) for k, v in DOCKER_COMMON_ARGS.items()}
    spec.update(extra)
    return spec


def _given(params, name, env):
    """An option's value: given, else its environment fallback (as the argument spec has it), else its default.

    Modules get their parameters validated (fallbacks applied); callers outside Ansible (the benchmark, tests)
    pass plain dicts, and get the same resolution from the same spec.
    """
    value = params.get(name)
    if value is not None:
        return value
    option = DOCKER_COMMON_ARGS[name]
    for var in (option.get("fallback") or (None, []))[1]:
        if env.get(var, "") != "":
            raw = env[var]
            return raw.strip().lower() in ("1", "true", "yes", "on") if option["type"] == "bool" else (
                int(raw) if option["type"] == "int" else raw)
    return option.get("default")


def _is_loopback(host):
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connection_params(params, environ=None):
    """Resolve and check the connection options; returns base_url, tls (False or a dict), timeout, warnings.

    Raises DockerOptionsError naming the option when the combination is refused.
    """
    env = os.environ if environ is None else environ
    base_url = _given(params, "docker_host", env)
    parsed = urlparse(base_url)
    if parsed.scheme not in SCHEMES:
        raise DockerOptionsError("%r: only unix://, tcp:// and https:// addresses are accepted (http:// and others "
                                 "would carry node identities in clear or are not supported)" % (base_url,),
                                 field="docker_host")
    verify = params.get("validate_certs")
    if verify is None:
        verify = env.get("DOCKER_TLS_VERIFY", "") != ""
    use_tls = bool(verify) or bool(_given(params, "tls", env)) or parsed.scheme == "https"
    cert_path = env.get("DOCKER_CERT_PATH") or None
    warnings = []
    if parsed.scheme == "unix":
        given = [o for o in TLS_OPTIONS if params.get(o)]
        if use_tls or given:
            raise DockerOptionsError("%s is a Unix socket: TLS options (%s) need a tcp:// or https:// address"
                                     % (base_url, ", ".join(given) or "DOCKER_TLS / DOCKER_TLS_VERIFY"),
                                     field=(given or ["docker_host"])[0])
        return dict(base_url=base_url, tls=False, timeout=_given(params, "timeout", env), warnings=warnings)
    if not parsed.hostname or not parsed.port:
        raise DockerOptionsError("%r needs a host and a port (tcp://ADDRESS:2376)" % (base_url,), field="docker_host")
    if not use_tls:
        if not _is_loopback(parsed.hostname) and not params.get("insecure"):
            raise DockerOptionsError(
                "%s is plain TCP to a host other than this one: anyone on the way reads and could drive the engine. "
                "Use mutual TLS (validate_certs, ca_path, client_cert, client_key), or set insecure: true if you "
                "really mean it" % base_url, field="docker_host")
        return dict(base_url=base_url, tls=False, timeout=_given(params, "timeout", env), warnings=warnings)

    def pick(option):
        variable, filename = TLS_FILES[option]
        if params.get(option):
            return params[option]
        if env.get(variable):
            return env[variable]
        if cert_path:
            candidate = os.path.join(cert_path, filename)
            if os.path.exists(candidate):
                return candidate
        return None

    tls = dict(
        verify=bool(verify),
        ca_cert=pick("ca_path"),
        client_cert=pick("client_cert"),
        client_key=pick("client_key"),
        assert_hostname=_given(params, "tls_hostname", env) or parsed.hostname,
    )
    if verify and not tls["ca_cert"]:
        raise DockerOptionsError("validate_certs is set but no CA was given (ca_path, FENRIR_DOCKER_CA_CERT, or ca.pem in "
                                 "DOCKER_CERT_PATH)",
                                 field="ca_path")
    if bool(tls["client_cert"]) != bool(tls["client_key"]):
        raise DockerOptionsError("client_cert and client_key must be given together", field="client_cert")
    if not verify:
        warnings.append("TLS to %s without validate_certs: the connection is encrypted but the engine's "
                        "certificate is not checked" % base_url)
    return dict(base_url=base_url, tls=tls, timeout=_given(params, "timeout", env), warnings=warnings)


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
