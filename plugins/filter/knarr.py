# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the knarr_node role: every host's settings into one plan; knarr.toml and payloads."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.identity import node_id_from_seed, seed_from_b64
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import build_config, parse_payload, render_toml
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import validate_label
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import NODE_OPTIONS, normalize_node
from ansible_collections.fenrir.fleet.plugins.plugin_utils.plan_errors import plan_or_error

PREFIX = "knarr_node_"
# Role variables that are not node settings: who and whether (per host), and the role's output.
ROLE_ONLY = ("label", "state", "db_b64", "results")
# Role variables read once for the whole play (module options of the fleet, not of a node): every host must
# see the same value.
FLEET_SETTINGS = ("registry", "registry_key_file", "network", "subnet", "gateway", "pool_start", "pool_end",
                  "parallelism", "wait", "boot_timeout", "provisioner_db_b64",
                  # a fleet over Docker hosts (fenrir.fleet.fleet_placement, knarr_image)
                  "docker_tls_dir", "port_pool_start", "port_pool_end", "image_source", "image_archive", "prune",
                  # rolling upgrades (fenrir.fleet.knarr_container)
                  "upgrade_batch", "upgrade_rollback")
# Fleet settings that are secrets: an error about them names the hosts, never the values.
SECRET_SETTINGS = ("provisioner_db_b64",)
# What fenrir.fleet.fleet_placement needs of a node to place it.
PLACEMENT_FIELDS = ("label", "docker_host", "network_mode", "memory", "port", "image", "ip", "location", "nonce")
STATES = ("present", "absent")
# An AWX survey's yes/no question: a multiplechoice of exactly these two strings.
SURVEY_BOOLEANS = {"true": True, "false": False}
# Role variables whose module option has another name.
ROLE_FIELDS = dict(db_b64="node_db_b64")


def _fail(host, name, message, label=None):
    who = "node %r (host %s)" % (label, host) if label is not None and label != host else "node %r" % host
    raise AnsibleFilterError("%s, field %r (variable %s%s): %s" % (who, ROLE_FIELDS.get(name, name), PREFIX, name, message))


def _check_fleet(settings, hosts):
    """Fleet settings must be the same on every host (they are read once, for the play)."""
    for name in FLEET_SETTINGS:
        seen = {}
        for host, values in zip(hosts, settings):
            seen.setdefault(repr(values.get(name)), host)
        if len(seen) > 1:
            shown = ", ".join("host %s has %s" % (host, "a value" if name in SECRET_SETTINGS and value != "None" else value)
                              for value, host in sorted(seen.items(), key=lambda i: i[1]))
            raise AnsibleFilterError("variable %s%s: a fleet setting, read once for the whole play, differs between the "
                                     "play's hosts (%s); set it for the whole fleet (group_vars), not per host"
                                     % (PREFIX, name, shown))


def _check_types(host, label, values, options):
    """Each variable the host sets against its option in the role's argument spec (types, choices, elements): the
    check Ansible makes before a role's first task, made here once for every host of the play."""
    for name in sorted(values):
        spec = options.get(PREFIX + name)
        if spec is None or values[name] is None:
            continue
        checked = ArgumentSpecValidator({name: spec}).validate({name: values[name]})
        if checked.error_messages:
            _fail(host, name, checked.error_messages[0], label)


def knarr_node_plan(settings, hosts, remove_all=False, options=None, errors="fail"):
    """Every host's settings (its ``knarr_node_*`` variables as Ansible resolved them for that host, without
    the prefix) into one plan: ``present`` (each node's settings for fenrir.fleet.knarr_container),
    ``registry`` (what fenrir.fleet.fleet_registry reserves for them, identities included), ``placement`` (what
    fenrir.fleet.fleet_placement places, identities included), ``absent`` (the labels to decommission), ``images``
    (image -> labels) and ``hosts`` (label -> inventory host).

    With ``remove_all`` every host is decommissioned, whatever its knarr_node_state. ``options`` (the role's
    argument spec, ``meta/argument_specs.yml``) checks every host's variables in one go, as Ansible's own role
    argument validation would host by host. Fails naming the host, the variable and what is wrong; an identity is
    never shown. With ``errors='return'`` the failure is returned as ``{"error": message}`` (see plan_errors).
    """
    return plan_or_error(_node_plan, errors, list(settings), list(hosts), remove_all, options)


def _node_plan(settings, hosts, remove_all, options):
    if len(settings) != len(hosts):
        raise AnsibleFilterError("knarr_node_plan: %d settings for %d hosts" % (len(settings), len(hosts)))
    plan = dict(present=[], registry=[], placement=[], absent=[], images={}, hosts={})
    known = set(NODE_OPTIONS) | set(ROLE_ONLY) | set(FLEET_SETTINGS)
    identities = {}
    for host, values in zip(hosts, settings):
        unknown = sorted(set(values) - known)
        label = values.get("label", host)
        if unknown:
            _fail(host, unknown[0], "not a variable of the knarr_node role (a typo?)", label)
        if options:
            _check_types(host, label, values, options)
        state = "absent" if remove_all else values.get("state", "present")
        if state not in STATES:
            _fail(host, "state", "%r is not one of %s" % (state, ", ".join(STATES)), label)
        try:
            validate_label(label, removal=state == "absent")
        except FleetError as exc:
            _fail(host, "label", exc.message, label)
        if label in plan["hosts"]:
            raise AnsibleFilterError("hosts %s and %s share knarr_node_label %s; a label is one node"
                                     % (plan["hosts"][label], host, label))
        plan["hosts"][label] = host
        if state == "absent":
            plan["absent"].append(label)
            continue
        node = {k: v for k, v in values.items() if k in NODE_OPTIONS and v is not None}
        node["label"] = label
        try:
            normalised = normalize_node(node)
        except FleetError as exc:
            _fail(host, exc.field or "label", exc.message, label)
        plan["present"].append(node)
        plan["images"].setdefault(normalised["image"], []).append(label)
        request = {k: node[k] for k in ("label", "ip", "location", "nonce") if node.get(k) is not None}
        if values.get("db_b64"):
            try:
                node_id = node_id_from_seed(seed_from_b64(values["db_b64"], label))
            except FleetError as exc:
                _fail(host, "db_b64", exc.message, label)
            if node_id in identities:
                _fail(host, "db_b64", "the same identity (node id %s) is given to node %r; every node needs its own"
                      % (node_id, identities[node_id]), label)
            identities[node_id] = label
            request["node_db_b64"] = values["db_b64"]
        plan["registry"].append(request)
        placed = {k: node[k] for k in PLACEMENT_FIELDS if node.get(k) is not None}
        if request.get("node_db_b64"):
            placed["node_db_b64"] = request["node_db_b64"]
        plan["placement"].append(placed)
    _check_fleet(settings, hosts)
    return plan


def knarr_node_outcomes(results):
    """label -> {label, result, changed, failed, reason} from the module results of a run (decommission,
    containers): what each host reports for its node (fenrir.fleet.node_outcome)."""
    outcomes = {}
    for result in results:
        for node in (result or {}).get("nodes") or []:
            outcomes[node["label"]] = dict(label=node["label"], result=node["result"], changed=bool(node.get("changed")),
                                           failed=bool(node.get("failed")), reason=node.get("reason"))
    return outcomes


def knarr_toml(node, ip):
    """knarr.toml for one node's settings and its address (what fenrir.fleet.knarr_container writes)."""
    try:
        return render_toml(build_config(normalize_node(node), ip))
    except FleetError as exc:
        raise AnsibleFilterError(str(exc))


def knarr_config(node, ip):
    """knarr.toml as data (a dict) for one node's settings and its address."""
    try:
        return build_config(normalize_node(node), ip)
    except FleetError as exc:
        raise AnsibleFilterError(str(exc))


def knarr_payload(payload_json, dry_run=None):
    """Parse and check a prepare-payload payload; returns node settings (label, location, node_db_b64, ...)."""
    try:
        return parse_payload(payload_json, dry_run)
    except FleetError as exc:
        raise AnsibleFilterError(str(exc))


def knarr_node_id(node_db_b64, label=None):
    """The node id of a base64 node.db; fails naming the node and field when it is not a knarr identity."""
    try:
        return node_id_from_seed(seed_from_b64(node_db_b64, label))
    except FleetError as exc:
        raise AnsibleFilterError(str(exc))


def survey_bool(value, name="value"):
    """A boolean from an AWX survey answer: AWX surveys have no boolean type, so a yes/no question is a
    multiplechoice of exactly "true" and "false". Those two strings (and real booleans) are taken; anything else
    ("False", "no", "0", "") is refused naming the variable, never guessed."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in SURVEY_BOOLEANS:
        return SURVEY_BOOLEANS[value]
    raise AnsibleFilterError("variable %s: must be the survey choice \"true\" or \"false\" (or a boolean), got %r"
                             % (name, value))


class FilterModule:
    def filters(self):
        return dict(knarr_node_plan=knarr_node_plan, knarr_node_outcomes=knarr_node_outcomes,
                    knarr_toml=knarr_toml, knarr_config=knarr_config, knarr_payload=knarr_payload,
                    knarr_node_id=knarr_node_id, survey_bool=survey_bool)
