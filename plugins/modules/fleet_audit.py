#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_audit
short_description: Verify the audit chain of the fleet registry (fleet.db)
version_added: 0.1.0
description:
  - Every change to the fleet registry appends an entry to a SHA-256 hash chain in the same transaction.
    This module walks the chain and checks that each entry's hash, height and link to the previous entry match,
    and that every node row equals the newest audit entry for it.
  - A row or an entry edited, added or removed outside fenrir.fleet (for example with C(sqlite3)) breaks the chain;
    the module then fails with the first problem found (which entry or which node, which fields), unless
    O(fail_on_mismatch=false).
  - Read-only. The registry is never created, migrated or written; a registry with another schema version than
    the collection's is refused with a message saying how to migrate it.
author:
  - fenrir.fleet maintainers
options:
  db:
    description: Path of the registry, C(fleet.db). It must exist.
    type: path
    required: true
  key_file:
    description:
      - The registry's key file. Default C(fleet.key) beside O(db).
      - Verifying does not decrypt anything; the option exists so the same variables serve every fleet module.
    type: path
  fail_on_mismatch:
    description: Fail when the chain is broken. With V(false), return RV(ok=false) and RV(problem) instead.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: The module never changes anything; it runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
notes:
  - The chain is a plain SHA-256 chain. It shows edits made without rewriting the chain; someone who rewrites
    every later hash as well is not detected. Keep copies of RV(entries) and the newest hash elsewhere if that matters.
seealso:
  - module: fenrir.fleet.fleet_node
  - module: fenrir.fleet.fleet_status
"""

EXAMPLES = r"""
- name: Verify the registry's audit chain (fails when broken)
  fenrir.fleet.fleet_audit:
    db: /var/lib/fenrir/fleet.db

- name: Only report a broken chain
  fenrir.fleet.fleet_audit:
    db: /var/lib/fenrir/fleet.db
    fail_on_mismatch: false
  register: fleet_audit

- name: Say what is wrong
  ansible.builtin.debug:
    msg: "{{ fleet_audit.problem }}"
  when: not fleet_audit.ok
"""

RETURN = r"""
ok:
  description: Whether the chain and every node row match.
  returned: success
  type: bool
  sample: true
entries:
  description: Number of audit entries read (up to the first problem).
  returned: success
  type: int
  sample: 15
problem:
  description: The first problem found, naming the entry or node and the fields; V(null) when RV(ok).
  returned: success
  type: str
  sample: "node 'beta' differs from audit entry 9 in location: changed behind the registry's back"
height:
  description: Height of the audit entry the problem concerns; V(null) when RV(ok) or when no entry applies.
  returned: success
  type: int
  sample: 9
label:
  description: Label of the node the problem concerns; V(null) when RV(ok).
  returned: success
  type: str
  sample: beta
db:
  description: Absolute path of the registry.
  returned: always
  type: str
  sample: /var/lib/fenrir/fleet.db
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils.drift import DriftError, audit


def main():
    module = AnsibleModule(
        argument_spec=dict(
            db=dict(type="path", required=True),
            key_file=dict(type="path", no_log=False),
            fail_on_mismatch=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    try:
        result = audit(module.params["db"], module.params["key_file"])
    except DriftError as exc:
        module.fail_json(msg=str(exc), db=module.params["db"])
    if not result["ok"] and module.params["fail_on_mismatch"]:
        module.fail_json(msg="the audit chain of %s is broken: %s" % (result["db"], result["problem"]), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
