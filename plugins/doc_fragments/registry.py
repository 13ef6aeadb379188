# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet registry options (plugins/module_utils/registry_options.py) and the fleet's address pool."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  registry:
    description:
      - Where the fleet registry lives. A path is an SQLite file, C(fleet.db), created (mode 0600, its directory
        0700) on first use. A C(postgresql://user@host:port/dbname) DSN is a PostgreSQL database (the Python
        package C(psycopg) 3 is needed on the controller then); its tables are created on first use.
      - A DSN's password belongs in C(PGPASSWORD) or a passfile (C(PGPASSFILE), C(~/.pgpass)), never on a command
        line. One written in the DSN works, but is masked (C(user:***@)) wherever the DSN is shown.
      - The alias O(db) is deprecated.
    type: str
    required: true
    aliases: [db]
  key_file:
    description:
      - The file holding the registry's secret key (a Fernet key).
      - When not given, the key is looked for, first match only, in the environment variable
        C(FENRIR_REGISTRY_KEY) (the key itself, for example from an AWX credential), then in the file named by
        C(FENRIR_REGISTRY_KEY_FILE), then in C(fleet.key) beside an SQLite registry. A PostgreSQL registry has no
        "beside", so give O(key_file) or one of the variables.
      - The registry records the key's fingerprint, so a wrong or missing key is an error naming where it was
        looked for, before anything is written.
    type: path
"""

    POOL = r"""
options:
  subnet:
    description: The fleet network's IPv4 subnet; node addresses are reserved inside it.
    type: str
    default: 172.21.0.0/24
  gateway:
    description:
      - The subnet's gateway (the provisioner listens there); never given to a node.
      - Default the subnet's first host address.
    type: str
  pool_start:
    description:
      - First address of the dynamic pool. Default the subnet's 10th address (C(172.21.0.10) in the default subnet).
    type: str
  pool_end:
    description:
      - Last address of the dynamic pool. Default the subnet's 7th address from the end (C(172.21.0.249) in a /24).
    type: str
"""
