#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: tenant_info
short_description: Status of tenant workloads, as an operator needs it
version_added: 0.1.0
description:
  - Reports every tenant of this prefix and fleet registry on the Docker engine (or the tenants named in
    O(tenant_ids)), read from C(docker inspect) - never changes anything.
  - "C(status): C(running); C(starting) (restarting, or its health check says starting); C(stopped) (exited with
    code 0, paused, or never started); C(failed) (non-zero exit, killed for memory, dead, or its container missing
    while the registry holds it live) - with C(exit_code) and C(reason)."
  - C(health) is Docker's own (C(healthy), C(unhealthy), C(starting)), or C(none) when the container has no health
    check; it is never assumed from the container running.
  - Containers that carry this prefix's tenant label but belong to another fleet registry (or were not made by
    fenrir.fleet) are listed in RV(foreign), never touched.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
requirements:
  - docker (the Docker SDK for Python) >= 7.0 on the host that runs the module
extends_documentation_fragment:
  - fenrir.fleet.docker
options:
  tenant_ids:
    description: The tenants to report. Default every tenant of O(prefix) and O(registry) on the engine.
    type: list
    elements: str
  prefix:
    description: The tenants' naming prefix (see M(fenrir.fleet.tenant)).
    type: str
    default: fenrir
  registry:
    description: The fleet registry (a path or a C(postgresql://) DSN) the tenants belong to.
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  idempotent:
    support: full
    description: Never changes anything.
seealso:
  - module: fenrir.fleet.tenant
"""

EXAMPLES = r"""
- name: Status of every tenant on the local engine
  fenrir.fleet.tenant_info:
    registry: /var/lib/fenrir/fleet.db
  register: tenant_status

- name: Fail when a tenant is not running and healthy
  ansible.builtin.assert:
    that: item.status == 'running' and item.health in ['healthy', 'none']
    fail_msg: "{{ item.tenant_id }}: {{ item.status }} ({{ item.reason }})"
  loop: "{{ tenant_status.tenants }}"
  loop_control:
    label: "{{ item.tenant_id }}"
"""

RETURN = r"""
tenants:
  description: One entry per tenant, by tenant id.
  returned: always
  type: list
  elements: dict
  sample:
    - tenant_id: acme-corp
      container_name: fenrir-tenant-acme-corp
      container_id: 4c5e0f...
      image: fenrir-tenant-http:latest
      image_id: sha256:9a1b...
      status: failed
      health: none
      exit_code: 137
      reason: killed for exceeding its memory limit (OOMKilled, exit code 137)
      oom_killed: true
      restart_count: 0
      started_at: "2026-12-02T10:00:00.1Z"
      finished_at: "2026-12-02T10:00:01.3Z"
      ports: [{name: http, container_port: 8080, protocol: tcp, host_ip: 0.0.0.0, host_port: 8080}]
      cpu: 500
      memory: 32
      restart_policy: "no"
      spec_digest: 1f2e3d4c5b6a7980
      previous_left_aside: false
      record: {tenant_id: acme-corp, status: failed}
foreign:
  description: Containers with this prefix's tenant label that are not this registry's tenants (C(container_name),
    C(tenant_id), C(reason)).
  returned: always
  type: list
  elements: dict
summary:
  description: How many tenants have each status.
  returned: always
  type: dict
  sample: {running: 3, failed: 1}
registry:
  description: The registry as containers are labelled with it (C(location)), and whether records are persisted.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import docker_argument_spec
from ansible_collections.fenrir.fleet.plugins.module_utils.tenants import run_module, status


def argument_spec():
    return docker_argument_spec(
        tenant_ids=dict(type="list", elements="str"),
        prefix=dict(type="str", default="fenrir"),
        registry=dict(type="str", required=True),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    run_module(module, status)


if __name__ == "__main__":
    main()
