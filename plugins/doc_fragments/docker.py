# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker connection options shared by every fenrir.fleet module that talks to an engine
(plugins/module_utils/docker_options.py defines them once)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - URL of the Docker engine API. Only C(unix://), C(tcp://) and C(https://) are accepted.
      - If not given, the E(DOCKER_HOST) environment variable is used.
      - Plain C(tcp://) (no TLS) to anything but loopback is refused unless O(insecure=true).
    type: str
    default: unix:///var/run/docker.sock
    aliases: [docker_url]
  tls:
    description:
      - Connect with TLS without verifying the engine's certificate (a warning says so). Prefer O(validate_certs).
      - If not given, E(DOCKER_TLS) is used.
    type: bool
    default: false
  validate_certs:
    description:
      - Connect with TLS and verify the engine's certificate against O(ca_path) (mutual TLS when O(client_cert) is set).
      - If not given, any non-empty E(DOCKER_TLS_VERIFY) turns it on, as for the Docker CLI and SDK.
    type: bool
    aliases: [tls_verify]
  ca_path:
    description:
      - CA certificate that signed the engine's certificate.
      - If not given, E(FENRIR_DOCKER_CA_CERT) (a file, as an AWX credential injects it), else C(ca.pem) in
        E(DOCKER_CERT_PATH) when that is set.
    type: path
    aliases: [ca_cert, tls_ca_cert, cacert_path]
  client_cert:
    description:
      - Client certificate for mutual TLS. If not given, E(FENRIR_DOCKER_CLIENT_CERT), else C(cert.pem) in
        E(DOCKER_CERT_PATH) when that is set.
    type: path
    aliases: [tls_client_cert, cert_path]
  client_key:
    description:
      - Key of O(client_cert). If not given, E(FENRIR_DOCKER_CLIENT_KEY), else C(key.pem) in E(DOCKER_CERT_PATH)
        when that is set.
    type: path
    aliases: [tls_client_key, key_path]
  tls_hostname:
    description:
      - Host name expected in the engine's certificate. Defaults to the host part of O(docker_host).
      - If not given, E(DOCKER_TLS_HOSTNAME) is used.
    type: str
  timeout:
    description:
      - Seconds to wait for one Docker API call. If not given, E(DOCKER_TIMEOUT) is used.
    type: int
    default: 60
  insecure:
    description:
      - Allow plain C(tcp://) (no TLS) to an engine that is not on this machine. Anyone on the way can read and drive it.
    type: bool
    default: false
notes:
  - These options can be set once for a play with C(module_defaults) and the C(group/fenrir.fleet.docker) action group.
  - TLS options with a C(unix://) address are refused, not ignored.
requirements:
  - docker (the Docker SDK for Python) on the host that runs the module
"""
