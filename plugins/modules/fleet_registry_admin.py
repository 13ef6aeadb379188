#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_registry_admin
short_description: Copy the fleet registry between SQLite and PostgreSQL, or rotate its key
version_added: 0.2.0
description:
  - Works on the fleet registry as a whole. The node, host and tenant records are kept by
    M(fenrir.fleet.fleet_registry), M(fenrir.fleet.knarr_container) and M(fenrir.fleet.tenant).
  - O(state=copied) moves a fleet's memory. The registry O(registry) is copied into the empty registry O(target)
    (an SQLite file or a PostgreSQL DSN each, either way round) with every record, secret and audit entry as
    they are. The copy is then verified with the same key, through its audit chain. The source is read in one
    snapshot and never written. An original fleet-provision-docker-lite C(fleet.db), or an older schema, is
    adopted or migrated in memory on the way, so it goes straight into PostgreSQL and the file stays as it was.
  - The copy gets one audit entry more than the source, a C(copy) entry naming the source and its newest entry.
    It also remembers the source's location, so containers labelled for the old registry are the copy's
    (M(fenrir.fleet.knarr_container) and M(fenrir.fleet.fleet_status) treat them as their own).
    Stop using the source once the fleet runs on the copy.
  - O(state=rekeyed) rotates the registry key. A new key is made; every secret (node identities and tokens,
    tenant specs, the provisioner's seed) and the sealed audit key are re-encrypted under it in one transaction,
    with an audited C(rekey) entry per record and a C(rotate_key) entry naming both key fingerprints. The new key
    is written to O(new_key_file) (0600); the registry is verified with it afterwards.
  - 'Order and recovery of a rotation: under the registry''s write lock the new key is first written whole to
    C(<new_key_file>.pending); then the transaction commits; then the pending file is renamed over O(new_key_file).
    A failure before the commit changes nothing (the pending file is removed, the old key stays). If the
    rename fails or the run dies after the commit, the registry''s key is in the pending file. Every other run
    then fails with an error pointing at it, and running this module again with the same options puts it in
    place without rotating again (RV(finished_interrupted)). When the commit''s outcome cannot be known (a lost
    connection), the pending file is kept and the next run decides from the fingerprint the registry records.'
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - fenrir.fleet.registry
  - fenrir.fleet.attributes
options:
  state:
    description:
      - V(copied) copies O(registry) into O(target); V(rekeyed) rotates the key of O(registry).
    type: str
    required: true
    choices: [copied, rekeyed]
  target:
    description:
      - The registry to copy into, a path (SQLite) or a C(postgresql://) DSN. Required with O(state=copied).
      - It must be empty (no records, no audit entries), or already hold a copy of O(registry) as it is now
        (then nothing is done). A target copied from the source before the source was written again is refused
        (the two have diverged).
      - The copy opens with the same key as the source. Give that key to whatever uses the copy (O(key_file),
        C(FENRIR_REGISTRY_KEY), C(FENRIR_REGISTRY_KEY_FILE), or C(fleet.key) beside an SQLite copy).
    type: str
  create_key:
    description:
      - With O(state=copied), make a new key (in O(key_file), or where the key is looked for) when the source
        has none yet, as an original skill's C(fleet.db). A source that has a key always needs it.
    type: bool
    default: false
  new_key_file:
    description:
      - With O(state=rekeyed), where the new key is written (0600, atomically). Default the file the current key
        came from (O(key_file), C(FENRIR_REGISTRY_KEY_FILE), or C(fleet.key) beside an SQLite registry), which is
        then replaced.
      - Required when the current key comes from C(FENRIR_REGISTRY_KEY). Then update that credential with the
        new key afterwards (in AWX, write O(new_key_file) to storage that outlives the job).
      - The old key still opens backups made before the rotation; keep it with them.
    type: path
attributes:
  check_mode:
    support: full
    details:
      - O(state=copied) reads and verifies the source and looks at the target, then reports what would be copied.
        Nothing is written anywhere, not even a key file.
      - O(state=rekeyed) verifies the registry and re-encrypts every secret on a private in-memory copy, which
        proves that every secret opens with the current key. It writes nothing; RV(key_fingerprint) is V(null).
  diff_mode:
    support: full
    details:
      - O(state=copied) shows the target's record counts before and after. O(state=rekeyed) shows the key
        fingerprints. Never a key or a secret.
  idempotent:
    support: partial
    details:
      - O(state=copied) is idempotent. A target that holds a copy of the source as it is now is left alone.
      - O(state=rekeyed) rotates the key on every run; only finishing an interrupted rotation does not rotate again.
requirements:
  - cryptography
  - psycopg (3.x) for a C(postgresql://) registry or target
notes:
  - No key, secret or DSN password is ever in a result; a key is only named by its fingerprint (an HMAC of it).
seealso:
  - module: fenrir.fleet.fleet_audit
  - module: fenrir.fleet.fleet_registry
"""

EXAMPLES = r"""
- name: Move the fleet's memory from the controller's SQLite file into PostgreSQL (password from PGPASSWORD/passfile)
  fenrir.fleet.fleet_registry_admin:
    state: copied
    registry: /var/lib/fenrir/fleet.db
    target: postgresql://fleet@db.example.org:5432/fleet
  register: copied

- name: Adopt the original skill's fleet.db straight into PostgreSQL, with a new key
  fenrir.fleet.fleet_registry_admin:
    state: copied
    registry: /srv/old-skill/fleet.db
    key_file: /etc/fenrir/fleet.key
    create_key: true
    target: postgresql://fleet@db.example.org:5432/fleet

- name: Rotate the key of a PostgreSQL registry whose key file AWX injects; the new key goes to kept storage
  fenrir.fleet.fleet_registry_admin:
    state: rekeyed
    registry: postgresql://fleet@db.example.org:5432/fleet
    new_key_file: /srv/fenrir-keys/fleet.key.new
"""

RETURN = r"""
registry:
  description: The registry worked on (the source of a copy), a file's absolute path or the DSN without its password.
  returned: always
  type: str
  sample: /var/lib/fenrir/fleet.db
target:
  description: The copy, shown the same way.
  returned: state=copied
  type: str
  sample: postgresql://fleet@db.example.org:5432/fleet
copied:
  description: Rows per table of the source that are (or, in check mode, would be) in the copy.
  returned: state=copied
  type: dict
  sample: {registry_meta: 4, nodes: 3, held_runs: 1, hosts: 0, tenants: 0, registry_secrets: 0, audit: 9}
entries:
  description: Audit entries of the copy (the source's, plus its C(copy) entry).
  returned: state=copied
  type: int
  sample: 10
ok:
  description: Whether the copy verified (always V(true) when the module succeeds).
  returned: state=copied
  type: bool
source_head:
  description: The source's newest audit entry when it was copied.
  returned: state=copied
  type: dict
  contains:
    height:
      description: The entry's height.
      type: int
    hash:
      description: The entry's hash.
      type: str
audit_head:
  description:
    - The newest audit entry of the registry afterwards (of the copy with O(state=copied)); keep it elsewhere and
      give it to M(fenrir.fleet.fleet_audit) as O(fenrir.fleet.fleet_audit#module:expect_head). V(null) in check mode.
  returned: success
  type: dict
  contains:
    height:
      description: The entry's height.
      type: int
    hash:
      description: The entry's hash.
      type: str
former_locations:
  description: The registries the copy was made from, oldest first; containers labelled for them are the copy's.
  returned: state=copied
  type: list
  elements: str
  sample: [/var/lib/fenrir/fleet.db]
key_fingerprint:
  description:
    - The fingerprint of the registry's key afterwards (16 hex digits, an HMAC of the key that reveals nothing of it).
    - With O(state=rekeyed) in check mode, V(null) (the key is made by the real run).
  returned: success
  type: str
  sample: 9c3f51d0a2b47e18
previous_key_fingerprint:
  description: The fingerprint of the key before the rotation (V(null) when an interrupted rotation was finished).
  returned: state=rekeyed
  type: str
key_file:
  description: Where the new key was (or would be) written.
  returned: state=rekeyed
  type: str
  sample: /var/lib/fenrir/fleet.key
records:
  description: Records whose secrets were (or would be) re-encrypted.
  returned: state=rekeyed
  type: int
  sample: 12
finished_interrupted:
  description: Whether this run only put in place the key of an earlier rotation that had committed but not
    finished (nothing was rotated again).
  returned: state=rekeyed
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_registry_admin
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import run_module


def main():
    run_module(AnsibleModule(supports_check_mode=True, **fleet_registry_admin.ARGUMENT_SPEC), fleet_registry_admin)


if __name__ == "__main__":
    main()
