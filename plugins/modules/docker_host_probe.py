#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: docker_host_probe
short_description: Prove a managed Docker host from outside, over mutual TLS
version_added: 0.2.0
description:
  - Runs where the fleet's client certificate is (the controller) and proves a Docker daemon that the
    C(fenrir.fleet.docker_host) role configured, instead of trusting the host's word.
  - "C(mutual_tls): C(GET /_ping) and C(GET /version) with the client certificate; the daemon's certificate
    is verified against O(ca_path) and its subjectAltName against O(address). Returns the engine and API
    versions and the daemon certificate's SHA-256 fingerprint and expiry."
  - "With O(refusals) (the default) the negatives too: a request without a client certificate, one with a
    client certificate of another CA (made in memory for the probe and thrown away) and plain HTTP to the
    port must all be refused. Under TLS 1.3 a server that wants a client certificate completes the
    handshake and refuses on the first read, so each is a real request, not only a handshake."
  - RV(status) is C(connected) only when every check passes; otherwise C(disconnected) with the
    RV(problems). An unreachable host is a result, not a module failure.
  - With O(expect=closed) (a decommissioned host) the only check is that the port accepts no TCP
    connection; RV(status) is then C(closed) or C(open).
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.attributes
  - fenrir.fleet.attributes.read_only
requirements:
  - cryptography (for the certificate of another CA, when O(refusals=true))
options:
  address:
    description: The one literal IP address the daemon listens on.
    type: str
    required: true
  port:
    description: The daemon's TLS port.
    type: int
    default: 2376
  ca_path:
    description: The fleet CA certificate (verifies the daemon's certificate). Required unless O(expect=closed).
    type: path
  client_cert:
    description: The controller's client certificate (extendedKeyUsage clientAuth, signed by the fleet CA).
    type: path
  client_key:
    description: Key of O(client_cert). Never read into the result.
    type: path
  refusals:
    description: Also check that no client certificate, another CA's certificate and plain HTTP are refused.
    type: bool
    default: true
  expect:
    description: C(serving) proves the daemon; C(closed) proves the port closed (after decommission).
    type: str
    choices: [serving, closed]
    default: serving
  timeout:
    description: Seconds for each connection.
    type: float
    default: 10
notes:
  - The module changes nothing; its C(changed) is always false.
seealso:
  - ref: fenrir.fleet.docker_host
    description: The role that configures the daemon this module proves (C(ansible-doc -t role fenrir.fleet.docker_host)).
"""

EXAMPLES = r"""
- name: Prove the host from the controller
  fenrir.fleet.docker_host_probe:
    address: 192.0.2.10
    ca_path: state/pki/controller/ca.pem
    client_cert: state/pki/controller/cert.pem
    client_key: state/pki/controller/key.pem
  delegate_to: localhost
  register: proof

- name: After decommission the port is closed
  fenrir.fleet.docker_host_probe:
    address: 192.0.2.10
    expect: closed
  delegate_to: localhost
"""

RETURN = r"""
endpoint:
  description: The endpoint probed.
  returned: always
  type: str
  sample: tcp://192.0.2.10:2376
status:
  description: C(connected) or C(disconnected) (O(expect=serving)); C(closed) or C(open) (O(expect=closed)).
  returned: always
  type: str
  sample: connected
engine_version:
  description: The engine's version (C(GET /version) C(Version)).
  returned: when O(expect=serving)
  type: str
  sample: 20.10.24+dfsg1
api_version:
  description: The engine's API version.
  returned: when O(expect=serving)
  type: str
  sample: "1.41"
cert_fingerprint_sha256:
  description: SHA-256 fingerprint of the daemon's certificate, as C(openssl x509 -fingerprint -sha256) prints it.
  returned: when O(expect=serving)
  type: str
cert_not_after:
  description: Expiry of the daemon's certificate (UTC, ISO 8601).
  returned: when O(expect=serving)
  type: str
  sample: "2027-03-01T10:00:00Z"
memory_bytes:
  description: The host's memory as its engine reports it (C(GET /info) C(MemTotal)); the fleet places nodes against it.
  returned: when O(expect=serving)
  type: int
ncpu:
  description: The host's CPU count as its engine reports it (C(GET /info) C(NCPU)).
  returned: when O(expect=serving)
  type: int
checks:
  description: Each check with C(ok) and C(detail).
  returned: always
  type: dict
  sample: {mutual_tls: {ok: true, detail: ...}, no_client_certificate_refused: {ok: true, detail: "TLS error: ..."}}
problems:
  description: What failed, one sentence each; empty when the host is proven.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import docker_host_probe
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    run_module(AnsibleModule(supports_check_mode=True, **docker_host_probe.ARGUMENT_SPEC), docker_host_probe)


if __name__ == "__main__":
    main()
