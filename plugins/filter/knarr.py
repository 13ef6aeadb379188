# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn node settings into knarr.toml and payloads into node settings."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import (
    SpecError, build_config, normalize_spec, parse_payload, render_toml)


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
        out = []
        for raw in specs:
            spec = normalize_spec({k: v for k, v in raw.items() if k != "node_db_b64"})
            if not ips.get(spec["label"]):
                raise AnsibleFilterError("knarr_toml: node %r has no allocated address" % spec["label"])
            rendered = {k: v for k, v in raw.items() if k != "node_db_b64"}
            rendered["ip"] = ips[spec["label"]]
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


def _host_settings(host, hostvars, defaults, prefix="knarr_node_"):
    vars_ = hostvars[host]
    raw = {}
    for var, key in ROLE_SETTINGS.items():
        name = prefix + var
        if name in vars_:
            raw[key] = vars_[name]
        elif var == "label":
            raw[key] = host  # the role's default: the inventory host name
        else:
            raw[key] = defaults.get(var)
    return raw


def knarr_node_specs(hosts, hostvars, defaults):
    """Every host's node settings, validated: the host's ``knarr_node_*`` variables over ``defaults``.

    One call for the whole play instead of one task per host; fails naming the node and the field,
    when two hosts share a label, or when a given identity (``knarr_node_db_b64``) is not a knarr one.
    ``defaults`` maps role variable names without the prefix (``memory``, ``port``, ``db_b64``, ...) to values.
    """
    specs = []
    for host in hosts:
        raw = _host_settings(host, hostvars, defaults)
        try:
            specs.append(normalize_spec(raw))
        except SpecError as exc:
            raise AnsibleFilterError(str(exc))
    labels = [spec["label"] for spec in specs]
    shared = sorted({label for label in labels if labels.count(label) > 1})
    if shared:
        raise AnsibleFilterError("several hosts share knarr_node_label %s; a label is one node" % ", ".join(shared))
    # Given identities must be knarr identities (errors name the node; the identity is never shown).
    knarr_node_identities(hosts, hostvars, {"db_b64": defaults.get("db_b64")})
    return specs


def knarr_node_identities(hosts, hostvars, defaults=None):
    """{label: node_id} of every host that is given an identity (knarr_node_db_b64); validates each.

    Errors name the node and the field and never contain the identity.
    """
    out = {}
    for host in hosts:
        vars_ = hostvars[host]
        b64 = vars_["knarr_node_db_b64"] if "knarr_node_db_b64" in vars_ else (defaults or {}).get("db_b64")
        if b64:
            label = vars_["knarr_node_label"] if "knarr_node_label" in vars_ else host
            out[label] = knarr_node_id(b64, label)
    return out


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
                    knarr_node_identities=knarr_node_identities,
                    knarr_allocation_requests=knarr_allocation_requests)
