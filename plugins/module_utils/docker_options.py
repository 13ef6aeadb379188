# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One definition of the Docker connection options and the rules they must follow -- without the Docker SDK.

Every module that talks to a Docker engine extends :data:`DOCKER_COMMON_ARGS` (documented once, in the
``fenrir.fleet.docker`` doc fragment); the client is built from them in docker_common.py. This file imports nothing
but the standard library and Ansible, so that plugins on the controller (the tenants role's filter reads the options'
names and defaults) do not load the SDK. The rules are strict because the engine is handed node identities:

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

import ipaddress
import os
from urllib.parse import urlparse

from ansible.module_utils.basic import env_fallback

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError

__all__ = ("DEFAULT_DOCKER_HOST", "DOCKER_COMMON_ARGS", "DockerOptionsError", "TLS_FILES", "TLS_OPTIONS",
           "connection_params", "docker_argument_spec")

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
