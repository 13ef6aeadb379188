# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Docker connection options shared by every fenrir.fleet module that talks to an engine."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - URL of the Docker engine API, C(unix://) or C(tcp://).
      - If not given, the E(DOCKER_HOST) environment variable is used, then C(unix:///var/run/docker.sock).
    type: str
    aliases: [docker_url]
  tls:
    description:
      - Connect with TLS without verifying the engine's certificate. Prefer O(validate_certs).
      - If not given, E(DOCKER_TLS) is used.
    type: bool
    default: false
  validate_certs:
    description:
      - Connect with TLS and verify the engine's certificate against O(ca_path) (mutual TLS when O(client_cert) is set).
      - If not given, E(DOCKER_TLS_VERIFY) is used.
    type: bool
    default: false
    aliases: [tls_verify]
  ca_path:
    description:
      - CA certificate that signed the engine's certificate.
      - If not given and E(DOCKER_CERT_PATH) is set, C(ca.pem) in that directory.
    type: path
    aliases: [ca_cert, tls_ca_cert, cacert_path]
  client_cert:
    description:
      - Client certificate for mutual TLS. If not given and E(DOCKER_CERT_PATH) is set, C(cert.pem) there.
    type: path
    aliases: [tls_client_cert, cert_path]
  client_key:
    description:
      - Key of O(client_cert). If not given and E(DOCKER_CERT_PATH) is set, C(key.pem) there.
    type: path
    aliases: [tls_client_key, key_path]
  tls_hostname:
    description:
      - Host name expected in the engine's certificate. Defaults to the host part of O(docker_host).
    type: str
  timeout:
    description:
      - Seconds to wait for one Docker API call.
    type: int
    default: 60
notes:
  - These options can be set once for a play with C(module_defaults) and the C(group/fenrir.fleet.docker) action group.
  - Requires the Docker SDK for Python (C(docker)) on the host that runs the module.
"""
