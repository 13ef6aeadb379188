# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn node settings into knarr.toml and payloads into node settings."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import (
    build_config, normalize_spec, parse_payload, render_toml)
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import validate_label
from ansible_collections.fenrir.fleet.plugins.plugin_utils.host_settings import CachedHostvars as _Cached
from ansible_collections.fenrir.fleet.plugins.plugin_utils.host_settings import HostSettings


def knarr_toml(specs, allocations):
    """Render knarr.toml for node settings and their allocated addresses.

    ``specs``: one node's settings (a dict) or a list of them; ``allocations``: the address (a string)
    for a single node, or the ``nodes`` list returned by fenrir.fleet.fleet_node.
    Returns the TOML text for one node; for a list, each node's settings with its address (``ip``) and
    rendered ``knarr_toml`` (the form fenrir.fleet.knarr_container takes).
    """
    try:
        if isinstance(specs, dict):
            if not isinstance(allocations, str):
                raise AnsibleFilterError("knarr_toml: for one node, pass its address")
            return render_toml(build_config(normalize_spec(specs), allocations))
        ips = {n["label"]: n["ip"] for n in allocations}
        node_ids = {n["label"]: n.get("node_id") for n in allocations}
        out = []
        for raw in specs:
            spec = normalize_spec({k: v for k, v in raw.items() if k != "node_db_b64"})
            if not ips.get(spec["label"]):
                raise AnsibleFilterError("knarr_toml: node %r has no allocated address" % spec["label"])
            rendered = {k: v for k, v in raw.items() if k != "node_db_b64"}
            rendered["ip"] = ips[spec["label"]]
            if node_ids.get(spec["label"]):
                rendered["node_id"] = node_ids[spec["label"]]
            rendered["knarr_toml"] = render_toml(build_config(spec, ips[spec["label"]]))
            out.append(rendered)
        return out
    except SpecError as exc:
        raise AnsibleFilterError(str(exc))


def knarr_config(spec, ip):
    """knarr.toml as data (a dict) for one node's settings and address."""
    try:
        return build_config(normalize_spec(spec), ip)
    except SpecError as exc:
        raise AnsibleFilterError(str(exc))


def knarr_payload(payload_json, dry_run=None):
    """Parse and check a prepare-payload payload; returns node settings (label, location, node_db_b64, ...)."""
    try:
        return parse_payload(payload_json, dry_run)
    except SpecError as exc:
        raise AnsibleFilterError(str(exc))


def knarr_node_spec(spec):
    """Validate node settings; returns them with defaults filled in (fails naming the node and field)."""
    try:
        out = normalize_spec({k: v for k, v in spec.items() if k != "node_db_b64"})
    except SpecError as exc:
        raise AnsibleFilterError(str(exc))
    return out


def knarr_node_id(node_db_b64, label=None):
    """The node id of a base64 node.db; fails naming the node and field when it is not a knarr identity."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.identity import (
        IdentityError, node_id_from_seed, seed_from_b64)
    try:
        return node_id_from_seed(seed_from_b64(node_db_b64, label))
    except IdentityError as exc:
        raise AnsibleFilterError(str(exc))


# Role variable (without the knarr_node_ prefix) -> node setting.  Every setting can be set per host.
ROLE_SETTINGS = dict(
    label="label", location="location", ip="ip", nonce="nonce", image="image", network="network", memory="memory",
    pids_limit="pids_limit", restart_policy="restart_policy", port="node_port", sidecar_port="sidecar_port",
    jurisdiction="jurisdiction", cockpit_port="cockpit_port", cockpit_bind="cockpit_bind", bootstrap="bootstrap",
    upnp="upnp", provisioner_node_id="provisioner_node_id", provisioner_endpoint="provisioner_endpoint",
    initial_credit="initial_credit", min_balance="min_balance", echo_source="echo_source", echo_price="echo_price",
    echo_tags="echo_tags", config_overrides="config_overrides",
)


PREFIX = "knarr_node_"
# Role variables (without the prefix) read once per play, on the host the run_once tasks run on.
FLEET_SETTINGS = ("registry", "registry_key_file", "network", "subnet", "gateway", "pool_start", "pool_end",
                  "parallelism", "wait", "boot_timeout")


def _Settings(hostvars, context, context_host=None, role_defaults=None):
    """Each host's knarr_node_* setting as the role sees it on that host (see HostSettings)."""
    return HostSettings(hostvars, context, context_host, role_defaults, prefix=PREFIX, host_named=("label",))


def _labels(hosts, hostvars, removal=False):
    """Each host's label, validated; two hosts may not share one."""
    hostvars = hostvars if isinstance(hostvars, _Cached) else _Cached(hostvars)
    labels = []
    for host in hosts:
        vars_ = hostvars[host]
        label = vars_[PREFIX + "label"] if PREFIX + "label" in vars_ else host
        try:
            labels.append(validate_label(label, removal=removal))
        except SpecError as exc:
            raise AnsibleFilterError("host %s: %s" % (host, exc))
    shared = sorted({label for label in labels if labels.count(label) > 1})
    if shared:
        raise AnsibleFilterError("several hosts share knarr_node_label %s; a label is one node" % ", ".join(shared))
    return labels


def knarr_node_labels(hosts, hostvars, removal=False):
    """Every host's node label (``knarr_node_label``, default the host name), validated and unique.

    With ``removal``, labels only an older tool would have made (upper case, '_', '.') are accepted too:
    such a node can be decommissioned, not provisioned."""
    return _labels(hosts, hostvars, removal)


def knarr_node_states(hosts, hostvars, state, context_host=None, role_defaults=None):
    """The hosts split by their ``knarr_node_state``: ``{'present': [hosts], 'absent': [hosts]}``.

    ``state`` is knarr_node_state as the run_once task sees it (on ``context_host``); see knarr_node_specs.
    """
    hostvars = hostvars if isinstance(hostvars, _Cached) else _Cached(hostvars)
    _labels(hosts, hostvars, removal=True)  # unique; present hosts' labels are checked strictly by knarr_node_specs
    settings = _Settings(hostvars, {"state": state}, context_host, role_defaults)
    out = {"present": [], "absent": []}
    for host in hosts:
        value = settings.get(host, "state")
        if value not in out:
            raise AnsibleFilterError("host %s, field 'knarr_node_state': %r is not one of present, absent"
                                     % (host, value))
        out[value].append(host)
    return out


def knarr_node_specs(hosts, hostvars, defaults, context_host=None, role_defaults=None):
    """Every host's node settings, validated: the host's ``knarr_node_*`` variables over ``defaults``.

    One call for the whole play instead of one task per host; fails naming the node and the field,
    when two hosts share a label, or when a given identity (``knarr_node_db_b64``) is not a knarr one.
    ``defaults`` maps role variable names without the prefix (``memory``, ``port``, ``db_b64``, ...) to
    their values as templated on ``context_host`` (the host a run_once task runs on); where that is
    ``context_host``'s own inventory value, other hosts get ``role_defaults`` (the role's defaults,
    keyed by full variable name) instead.
    """
    hostvars = hostvars if isinstance(hostvars, _Cached) else _Cached(hostvars)
    _labels(hosts, hostvars)
    settings = _Settings(hostvars, defaults, context_host, role_defaults)
    variables = {key: PREFIX + var for var, key in ROLE_SETTINGS.items()}
    specs = []
    for host in hosts:
        raw = {key: settings.get(host, var) for var, key in ROLE_SETTINGS.items()}
        try:
            specs.append(normalize_spec(raw))
        except SpecError as exc:
            if exc.field in variables:  # say which role variable to fix
                raise AnsibleFilterError("node %r, field %r (variable %s of host %s): %s"
                                         % (exc.label, exc.field, variables[exc.field], host, exc.message))
            raise AnsibleFilterError(str(exc))
    # Fleet settings are read once for the play: every node must see the same value.
    for var in FLEET_SETTINGS:
        if var not in settings.context:
            continue
        seen = {}
        for host in hosts:
            seen.setdefault(repr(settings.get(host, var)), host)
        if len(seen) > 1:
            shown = ", ".join("host %s has %s" % (host, value) for value, host in sorted(seen.items(), key=lambda i: i[1]))
            raise AnsibleFilterError("field %r: a fleet setting, read once for the whole play, differs between the "
                                     "play's hosts (%s); set it for the whole fleet (group_vars), not per host"
                                     % (PREFIX + var, shown))
    # Given identities (each host's own knarr_node_db_b64) must be knarr identities, one per node.
    # Errors name the node and the field; the identity is never shown.
    given = {}
    for host, spec in zip(hosts, specs):
        b64 = hostvars[host][PREFIX + "db_b64"] if PREFIX + "db_b64" in hostvars[host] else None
        if b64:
            node_id = knarr_node_id(b64, spec["label"])
            if node_id in given:
                raise AnsibleFilterError("node %r, field 'knarr_node_db_b64': the same identity (node id %s) is "
                                         "given to node %r; every node needs its own"
                                         % (spec["label"], node_id, given[node_id]))
            given[node_id] = spec["label"]
    return specs


def knarr_allocation_requests(specs, hosts, hostvars):
    """What fenrir.fleet.fleet_node needs for each node: label, pinned ip, location, nonce, identity."""
    by_label = {}
    for host in hosts:
        vars_ = hostvars[host]
        label = vars_["knarr_node_label"] if "knarr_node_label" in vars_ else host
        by_label[label] = vars_["knarr_node_db_b64"] if "knarr_node_db_b64" in vars_ else None
    return [dict(label=s["label"], ip=s.get("ip"), location=s.get("location"), nonce=s.get("nonce"),
                 node_db_b64=by_label.get(s["label"]) or None) for s in specs]


def knarr_images(specs):
    """{image: [labels of the nodes that use it]} for a list of node settings."""
    images = {}
    for spec in specs:
        images.setdefault(spec.get("image") or "knarr-cluster-node:latest", []).append(spec["label"])
    return images


class FilterModule:
    def filters(self):
        return dict(knarr_toml=knarr_toml, knarr_config=knarr_config, knarr_payload=knarr_payload,
                    knarr_node_spec=knarr_node_spec, knarr_images=knarr_images,
                    knarr_node_id=knarr_node_id, knarr_node_specs=knarr_node_specs,
                    knarr_node_labels=knarr_node_labels,
                    knarr_node_states=knarr_node_states,
                    knarr_allocation_requests=knarr_allocation_requests)
