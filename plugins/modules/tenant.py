#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant
short_description: Run tenant workloads as one limited Docker container per tenant (seed 001's Docker provider)
version_added: 0.1.0
description:
  - For every tenant spec of O(tenants) (the seed's shape), makes the container C(<prefix>-tenant-<tenant_id>) run as
    specified on the Docker engine given by the connection options -- the local one or a managed host over mutual TLS.
    Many tenants per call, in parallel over the Docker API (O(parallelism) at a time).
  - "Units: C(resources.cpu) is millicores (1000 = 1 CPU) and becomes C(NanoCpus) (500 -> 500,000,000, a CFS quota of
    50000 per 100000); C(resources.memory) is MB (x 1024^2), and the swap limit is the same (no swap). Both are required.
    CPU beyond the engine's CPU count and memory below 6 MB are refused."
  - "Ports: C(host_port: 0) (or no C(host_port)) publishes nothing; other ports are published on O(bind_address).
    A host port another tenant or any other container on the engine already publishes is refused, naming both."
  - Before anything changes, every tenant is checked; one bad tenant refuses the whole call, naming the tenant and
    the field. Images must be on the engine already -- nothing is ever pulled.
  - CPU, memory and the restart policy are changed in place (C(docker update)). Any other change recreates the
    container without losing the tenant - the new container starts (and passes its health check) before the old one
    is removed; when it does not, the old one is put back under its name and the tenant fails saying why.
  - A container whose name is taken by something that is not this registry's tenant under this prefix (another
    prefix, another fleet registry, a container made by hand or by Landlord) is refused, never touched.
  - With O(state=absent), the containers of the tenants named in O(tenants) are removed and their records destroyed.
  - Each tenant is a record in the fleet registry (O(registry)). B(Until the registry's tenants table is on this
    branch, records are not persisted) - RV(registry.persisted) is false and the module warns; see the README.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
requirements:
  - docker (the Docker SDK for Python) >= 7.0 on the host that runs the module
extends_documentation_fragment:
  - fenrir.fleet.docker
options:
  tenants:
    description:
      - Tenant specs, in the seed's shape. With O(state=absent), a tenant id (string) or a spec (only its
        C(tenant_id) is used) per tenant.
      - "C(tenant_id): 1-63 characters of a-z, 0-9 and '-' (the container name C(<prefix>-tenant-<tenant_id>) must stay
        within 63)."
      - "C(provider_type): C(docker) (the default; anything else is refused)."
      - "C(containers): exactly one container: C(name), C(image), C(command) and C(args) (lists; the container runs
        command followed by args, the image's ENTRYPOINT stays), C(env) (mapping; values are strings, numbers are
        taken as text), C(ports) (list of C(container_port), C(host_port) (0 = not published), C(protocol) tcp, udp
        or sctp, C(name))."
      - "C(resources): C(cpu) millicores (10 up to 1000 x the engine's CPUs), C(memory) MB (at least 6)."
      - "C(provider_config): C(restart_policy) (C(no), C(always), C(unless-stopped) the default, C(on-failure) or
        C(on-failure:N)); C(log_driver) (one the engine has) and C(log_options) (a mapping of strings);
        C(health_check) with C(test) (a list such as C([CMD, prog, arg]), C([CMD-SHELL, cmd]), C([NONE]), or a shell
        command string), C(interval), C(timeout), C(start_period) (seconds, or C(500ms), C(5s), C(1m30s)) and
        C(retries). Without C(health_check) the image's own HEALTHCHECK applies, if it has one."
      - Env values of keys that look secret (token, secret, password, key, credential, auth) and passwords inside
        URL-like values are never shown - not in results, not in diffs, not in container labels.
    type: list
    elements: raw
    default: []
  remove:
    description:
      - Tenant ids to destroy in the same call (O(state=present) only), before the others are converged; the host
        ports they publish count as free for the others.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) makes every tenant of O(tenants) run as specified.
      - V(absent) removes their containers (also a previous one left aside by an interrupted run) and marks their
        records C(destroyed). Absent tenants are no change.
    type: str
    choices: [present, absent]
    default: present
  prefix:
    description:
      - Names the containers (C(<prefix>-tenant-<tenant_id>)) and their labels (C(<prefix>.tenant_id),
        C(<prefix>.owner), C(<prefix>.provider)). 1-24 characters of a-z, 0-9 and '-'.
      - Containers of another prefix are never touched.
    type: str
    default: fenrir
  registry:
    description:
      - The fleet registry holding the tenant records - a path (SQLite) or a C(postgresql://) DSN.
      - Every tenant container is labelled C(fenrir.fleet.registry) with it (a DSN without its password);
        containers of another registry are never touched.
    type: str
    required: true
  bind_address:
    description: Host address published ports are bound to (the seed publishes on every interface).
    type: str
    default: 0.0.0.0
  parallelism:
    description: How many tenants are worked on at once.
    type: int
    default: 4
  start_timeout:
    description: Seconds a started container has to become healthy (when it has a health check).
    type: int
    default: 60
  start_settle:
    description:
      - Seconds a started container without a health check must keep running to count as started.
    type: float
    default: 2.0
attributes:
  check_mode:
    support: full
    description: Checks and plans every tenant (create, update in place, recreate, start, remove) without changing
      Docker or the registry.
  diff_mode:
    support: full
    description: Shows each changed tenant before and after in the spec's terms (image, command, env with secrets
      masked, ports, limits, log, health check); a secret value that changes shows as C(******** (changed)).
  idempotent:
    support: full
    description: A second run with the same specs changes nothing and reports C(changed=false).
notes:
  - The module fails when any tenant fails, after handling all of them; RV(failed_tenants) names them and each
    tenant's C(reason) says why (with exit code, OOM kill or failing health check).
  - A tenant whose container is running but unhealthy, and whose spec did not change, is left as it is and
    reported with a warning.
seealso:
  - module: fenrir.fleet.tenant_info
"""

EXAMPLES = r"""
- name: Two tenants on the local engine
  fenrir.fleet.tenant:
    registry: /var/lib/fenrir/fleet.db
    tenants:
      - tenant_id: acme-corp
        provider_type: docker
        containers:
          - name: app
            image: fenrir-tenant-http:latest
            env:
              LOG_LEVEL: debug
              API_TOKEN: "{{ vault_acme_token }}"
            ports:
              - {container_port: 8080, host_port: 8080, protocol: tcp, name: http}
              - {container_port: 9090, host_port: 0, name: metrics}    # not published
        resources: {cpu: 500, memory: 256}                             # 0.5 CPU, 256 MB
        provider_config:
          restart_policy: unless-stopped
          log_driver: json-file
          log_options: {max-size: 10m, max-file: "3"}
          health_check: {test: [CMD, tenant-http, health], interval: 5s, timeout: 2s, retries: 3}
      - tenant_id: web-app
        containers: [{name: web, image: fenrir-tenant-http:latest}]
        resources: {cpu: 250, memory: 64}

- name: The same on a managed Docker host over mutual TLS
  fenrir.fleet.tenant:
    docker_host: tcp://10.0.0.7:2376
    validate_certs: true
    ca_path: /etc/fenrir/docker/ca.pem
    client_cert: /etc/fenrir/docker/cert.pem
    client_key: /etc/fenrir/docker/key.pem
    registry: /var/lib/fenrir/fleet.db
    tenants: "{{ tenant_specs }}"

- name: Destroy a tenant
  fenrir.fleet.tenant:
    registry: /var/lib/fenrir/fleet.db
    tenants: [web-app]
    state: absent
"""

RETURN = r"""
tenants:
  description: One result per tenant, in the order given.
  returned: always
  type: list
  elements: dict
  sample:
    - tenant_id: acme-corp
      container_name: fenrir-tenant-acme-corp
      container_id: 4c5e0f...
      image: fenrir-tenant-http:latest
      image_id: sha256:9a1b...
      status: running
      health: healthy
      exit_code: null
      reason: null
      oom_killed: false
      ports:
        - {name: http, container_port: 8080, protocol: tcp, host_ip: 0.0.0.0, host_port: 8080}
        - {name: metrics, container_port: 9090, protocol: tcp, host_ip: null, host_port: 0}
      cpu: 500
      memory: 256
      restart_policy: unless-stopped
      actions: [create, start]
      changed: true
      failed: false
      rolled_back: false
      record: {tenant_id: acme-corp, status: running, spec_digest: 1f2e..., spec: {}}
  contains:
    status:
      description:
        - C(running), C(starting) (restarting, or health C(starting)), C(stopped) (exited 0), C(failed) (non-zero exit,
          OOM killed, dead, or not started by this run). With O(state=absent) C(destroyed) or C(absent).
        - In check mode, the status of the container as it is now.
      type: str
    health:
      description: Docker's health status (C(healthy), C(unhealthy), C(starting)) or C(none) without a health check.
      type: str
    actions:
      description: What was (in check mode, would be) done, in order.
      type: list
      elements: str
    rolled_back:
      description: A recreate failed and the previous container runs again under the tenant's name.
      type: bool
    record:
      description: The tenant's registry record after the run (C(spec) with secrets masked).
      type: dict
failed_tenants:
  description: Ids of the tenants that failed.
  returned: always
  type: list
  elements: str
removed:
  description: With O(state=present), one result per tenant of O(remove) (C(removed) container names, C(destroyed)).
  returned: O(state=present)
  type: list
  elements: dict
registry:
  description: The registry as containers are labelled with it, and whether records were persisted.
  returned: always
  type: dict
  sample: {location: /var/lib/fenrir/fleet.db, persisted: false}
  contains:
    location:
      description: The registry's absolute path, or its DSN without the password.
      type: str
    persisted:
      description: Whether the records were written to the registry (false until its tenants table is on this branch).
      type: bool
problems:
  description: When the call is refused, every problem found (C(tenant_id), C(field), C(message)); nothing changed.
  returned: failure
  type: list
  elements: dict
"""

from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import docker_argument_spec
from ansible_collections.fenrir.fleet.plugins.module_utils.tenant_spec import secret_values
from ansible_collections.fenrir.fleet.plugins.module_utils.tenants import converge, destroy, run_module


def argument_spec():
    return docker_argument_spec(
        tenants=dict(type="list", elements="raw", default=[]),
        remove=dict(type="list", elements="str", default=[]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        prefix=dict(type="str", default="fenrir"),
        registry=dict(type="str", required=True),
        bind_address=dict(type="str", default="0.0.0.0"),
        parallelism=dict(type="int", default=4),
        start_timeout=dict(type="int", default=60),
        start_settle=dict(type="float", default=2.0),
    )


def hide_secrets(module):
    """Env secrets and a registry DSN's password never appear in what the module returns or logs."""
    for value in secret_values([t for t in module.params["tenants"] if isinstance(t, dict)]):
        module.no_log_values.add(value)
    registry = module.params.get("registry") or ""
    if "://" in registry:
        password = urlsplit(registry).password
        if password:
            module.no_log_values.add(password)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    hide_secrets(module)
    if module.params["state"] == "absent" and module.params["remove"]:
        module.fail_json(msg="remove is for state=present; with state=absent, list the tenants in tenants")
    run_module(module, converge if module.params["state"] == "present" else destroy, module.check_mode, module._diff)


if __name__ == "__main__":
    main()
