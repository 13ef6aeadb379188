# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet
short_description: The fleet registry (fleet.db) as an inventory
version_added: 0.1.0
description:
  - One host per node of the fleet registry, named by the node's C(label) (the name the knarr_node role and the
    registry use for a node; its container is C(fenrir-<label>), the node's C(server_id)).
  - C(ansible_host) is the node's address while it holds one. A destroyed node, or a failed one whose address was
    released, gets no C(ansible_host) (its last address may belong to another node by now); C(fleet_ip) still says
    what it was.
  - Every public field of the node record is a host variable prefixed C(fleet_) (C(fleet_label), C(fleet_server_id),
    C(fleet_ip), C(fleet_status), C(fleet_location), C(fleet_node_id), C(fleet_container_id), C(fleet_provider),
    C(fleet_nonce), C(fleet_reason), C(fleet_created_at), C(fleet_updated_at), C(fleet_last_seen),
    C(fleet_report_received_at), C(fleet_has_identity), C(fleet_docker_host), C(fleet_network_mode), C(fleet_port),
    C(fleet_image), ...), plus C(fleet_address_held). Timestamps are seconds since
    the epoch. Secrets never leave the registry.
  - The values are data, not templates (Ansible treats them as untrusted), so a C({{ }}) in a location stays text.
  - 'Groups: C(knarr_nodes) with every host; C(fleet_status_<status>) per status; C(fleet_location_<location>) per
    location, every character other than letters, digits and C(_) made C(_) (nodes without a location are in no
    location group); C(fleet_docker_host_<host>) per Docker host the node lives on (C(fleet_docker_host_local) for
    the controller''s engine), the same way -- C(--limit fleet_docker_host_docker1_example_net) works on one host''s
    nodes.'
  - The registry is opened read-only (SQLite C(mode=ro), PostgreSQL a read-only transaction); it is never created, migrated or written. A registry with
    another schema version than the collection's is refused with a message saying how to migrate it.
  - The inventory file's name must end in C(fleet.yml) or C(fleet.yaml).
author:
  - Fenrir Fleet Maintainers (@fenrir-fleet)
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: The name of this plugin; makes the file an inventory source for it.
    type: str
    required: true
    choices: [fenrir.fleet.fleet]
  registry:
    description:
      - Path of the fleet registry, C(fleet.db), or a C(postgresql://) DSN (password from C(PGPASSWORD) or a
        passfile). A relative path is relative to the inventory file's directory.
      - Not given in the file, E(FENRIR_REGISTRY) is used (the fenrir.fleet registry credential of AWX sets it, with
        E(PGPASSFILE), for an inventory source).
    type: str
    required: true
    aliases: [db]
    env:
      - name: FENRIR_REGISTRY
  include_destroyed:
    description: Also list destroyed nodes (in the group C(fleet_status_destroyed), without C(ansible_host)).
    type: bool
    default: false
notes:
  - The nodes are containers without SSH; playbooks that drive them from the controller set
    C(ansible_connection=local) (for example with O(compose)).
  - The group C(knarr_nodes) is also the group C(playbooks/provision.yml) targets. Do not combine this source with
    a provisioning inventory (for example C(-i inventories/)), or each node appears twice, once per host name.
  - The host variables are C(fleet_*), read from the registry; the knarr_node role's settings are C(knarr_node_*)
    and are not set by this plugin (its C(knarr_node_label) defaults to the host name, which is the label).
seealso:
  - module: fenrir.fleet.fleet_status
"""

EXAMPLES = r"""
# inventories/registry.fleet.yml -- every node of this checkout's registry
plugin: fenrir.fleet.fleet
registry: ../state/fleet.db

---
# With the constructed features: group by provider, a variable composed from registry fields,
# and a group of the nodes that have no identity yet.
plugin: fenrir.fleet.fleet
registry: /var/lib/fenrir/fleet.db
include_destroyed: true
strict: true
compose:
  ansible_connection: "'local'"
  knarr_node_location: fleet_location
keyed_groups:
  - key: fleet_provider
    prefix: provider
groups:
  without_identity: not fleet_has_identity
"""

import os

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

from ansible_collections.fenrir.fleet.plugins.module_utils.drift import DriftError, read_nodes
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import is_dsn

ALL_GROUP = "knarr_nodes"


def group_suffix(value):
    """A group-name-safe form of a registry value: letters, digits and '_' kept, anything else '_'."""
    return "".join(ch if (ch.isascii() and ch.isalnum()) or ch == "_" else "_" for ch in str(value))


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "fenrir.fleet.fleet"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("fleet.yml", "fleet.yaml"))

    def _db_path(self, inventory_path):
        if is_dsn(self.get_option("registry")):
            return self.get_option("registry")
        db = os.path.expanduser(self.get_option("registry"))
        if not os.path.isabs(db):
            db = os.path.join(os.path.dirname(os.path.abspath(inventory_path)), db)
        return os.path.normpath(db)

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        db = self._db_path(path)
        try:
            nodes = read_nodes(db, include_destroyed=self.get_option("include_destroyed"))
        except DriftError as exc:
            raise AnsibleParserError("%s: %s" % (path, exc))
        strict = self.get_option("strict")
        self.inventory.add_group(ALL_GROUP)
        for node in nodes:
            host = node["label"]
            self.inventory.add_host(host, group=ALL_GROUP)
            hostvars = {"fleet_%s" % k: v for k, v in node.items()}
            if node["address_held"] and node["ip"]:
                hostvars["ansible_host"] = node["ip"]
            for name, value in hostvars.items():
                self.inventory.set_variable(host, name, value)
            self.inventory.add_child(self.inventory.add_group("fleet_status_%s" % group_suffix(node["status"])), host)
            if node["location"]:
                self.inventory.add_child(
                    self.inventory.add_group("fleet_location_%s" % group_suffix(node["location"])), host)
            self.inventory.add_child(self.inventory.add_group(
                "fleet_docker_host_%s" % group_suffix(node.get("docker_host") or "local")), host)
            self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)
