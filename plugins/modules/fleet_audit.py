#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_audit
short_description: Verify the audit chain of the fleet registry (SQLite or PostgreSQL)
version_added: 0.1.0
description:
  - Every change to the fleet registry appends an entry to its audit chain in the same transaction. Each entry's
    hash is an HMAC with the registry's audit key (kept sealed under the registry key), and the newest entry's
    height and hash are kept as an anchor with its own HMAC.
  - This module walks the chain and checks each entry's hash, height and link to the previous entry, the anchor,
    that each record's entries follow on from each other, and that every record equals its newest audit entry.
  - A row or an entry edited, added or removed outside fenrir.fleet (for example with C(sqlite3) or C(psql))
    breaks the chain; the module then fails with the first problem found (which entry or which record, which
    fields), unless O(fail_on_mismatch=false).
  - RV(audit_head) is the newest entry (height and hash). Keep it outside the registry (an AWX artifact, a log)
    and give it back as O(expect_head) later; a registry restored from an older copy, anchor included, or
    replaced, is then found too -- something no check inside the database can see.
  - Read-only unless O(accept) or O(rebuild_index) is given. The registry is never created or migrated; a registry
    with another schema version than the collection's is refused with a message saying how to migrate it.
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.registry
  - fenrir.fleet.attributes
options:
  fail_on_mismatch:
    description: Fail when the chain is broken. With V(false), return RV(ok=false) and RV(problem) instead.
    type: bool
    default: true
  accept:
    description:
      - Labels of nodes whose record was changed outside fenrir.fleet and is to be kept as it is now. Each gets an
        C(accept) audit entry (before = what the trail recorded, after = the record as found), after which the
        registry writes to it again (it refuses to while the record and its newest entry differ).
      - Only for changes you have looked at (RV(problem) names them). Without O(accept) and O(rebuild_index) the
        module is read-only.
    type: list
    elements: str
    default: []
  rebuild_index:
    description: Rebuild the registry's index of held addresses from the node records (after RV(problem) reported
      it edited).
    type: bool
    default: false
  expect_head:
    description:
      - An RV(audit_head) returned by an earlier run and kept outside the registry. The chain must still hold that
        entry, with that hash; otherwise the registry was rolled back to an older copy, truncated, or replaced, and
        the module fails (or returns RV(ok=false) with O(fail_on_mismatch=false)).
    type: dict
    suboptions:
      height:
        description: The entry's height (V(0) for a registry without entries).
        type: int
        required: true
      hash:
        description: The entry's hash, 64 hex digits.
        type: str
        required: true
attributes:
  check_mode:
    support: full
    details:
      - Verifying changes nothing. With O(accept) or O(rebuild_index), reports what would change and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: full
requirements:
  - cryptography
notes:
  - Verifying needs the registry key (the chain is keyed); whoever can write the database but lacks the key cannot
    recompute the chain. No secret is ever in a result.
seealso:
  - module: fenrir.fleet.fleet_registry
  - module: fenrir.fleet.fleet_status
"""

EXAMPLES = r"""
- name: Verify the registry's audit chain (fails when broken)
  fenrir.fleet.fleet_audit:
    registry: /var/lib/fenrir/fleet.db

- name: Only report a broken chain
  fenrir.fleet.fleet_audit:
    registry: /var/lib/fenrir/fleet.db
    fail_on_mismatch: false
  register: fleet_audit

- name: Say what is wrong
  ansible.builtin.debug:
    msg: "{{ fleet_audit.problem }}"
  when: not fleet_audit.ok

- name: Verify, and check that the registry still holds the head kept by the previous run (no rollback)
  fenrir.fleet.fleet_audit:
    registry: postgresql://fleet@db.example.org/fleet
    key_file: /etc/fenrir/fleet.key
    expect_head: "{{ lookup('ansible.builtin.file', '/var/lib/fenrir/audit_head.json') | from_json }}"
  register: fleet_audit

- name: Keep the new head elsewhere
  ansible.builtin.copy:
    content: "{{ fleet_audit.audit_head | to_json }}"
    dest: /var/lib/fenrir/audit_head.json
    mode: "0644"

- name: Keep beta's record as it was edited by hand (after looking at it), then verify
  fenrir.fleet.fleet_audit:
    registry: /var/lib/fenrir/fleet.db
    accept: [beta]
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
audit_head:
  description: The newest audit entry when the chain was read. Keep it outside the registry and give it as
    O(expect_head) next time.
  returned: success
  type: dict
  contains:
    height:
      description: The entry's height (V(0) when there is none).
      type: int
      sample: 15
    hash:
      description: The entry's hash.
      type: str
      sample: 3f1c0a9b5e7d2c4f6a8b0c1d3e5f7a9b1c3d5e7f9a1b3c5d7e9f1a3b5c7d9e1f
label:
  description: Label of the node the problem concerns; V(null) when RV(ok).
  returned: success
  type: str
  sample: beta
accepted:
  description: Labels whose outside change was accepted (or, in check mode, would be).
  returned: success
  type: list
  elements: str
index_rebuilt:
  description: Whether the index of held addresses was (or would be) rebuilt because it differed.
  returned: success
  type: bool
registry:
  description: The registry (a file's absolute path, or the DSN without its password).
  returned: always
  type: str
  sample: /var/lib/fenrir/fleet.db
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_audit
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    run_module(AnsibleModule(supports_check_mode=True, **fleet_audit.ARGUMENT_SPEC), fleet_audit)


if __name__ == "__main__":
    main()
