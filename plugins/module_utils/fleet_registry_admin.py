# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.fleet_registry_admin module: the registry as a whole -- copied to another store (SQLite or
PostgreSQL, either way; an original skill's fleet.db adopted on the way), or its key rotated.

The work is the registry package's (``registry/transfer.py``, ``registry/rotation.py``); this is the contract:
options, results without secrets, check mode and diff.
"""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import (
    registry_argument_spec, registry_location)

NAME = "fleet_registry_admin"
REQUIREMENTS = ("cryptography",)
ARGUMENT_SPEC = dict(
    argument_spec=registry_argument_spec(
        state=dict(type="str", required=True, choices=["copied", "rekeyed"]),
        target=dict(type="str"),
        create_key=dict(type="bool", default=False),
        new_key_file=dict(type="path", no_log=False),
    ),
    required_if=[("state", "copied", ["target"])],
)
COPY_ONLY = ("target", "create_key")
REKEY_ONLY = ("new_key_file",)


def secret_values(params):
    """A password written in a DSN (registry, target): masked wherever it might appear."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry.location import dsn_password, is_dsn
    return {dsn_password(params[k]) for k in ("registry", "target")
            if is_dsn(params.get(k)) and dsn_password(params[k])}


def _refuse_foreign(params):
    state = params["state"]
    foreign = [k for k in (REKEY_ONLY if state == "copied" else COPY_ONLY)
               if params.get(k) not in (None, False)]
    if foreign:
        raise ModuleFailure("field %r: only for state=%s, not state=%s"
                            % (foreign[0], "rekeyed" if state == "copied" else "copied", state),
                            dict(registry=_shown(params["registry"])))


def _copied(params, check_mode, diff):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import copy_registry
    result = copy_registry(params["registry"], params["target"], key_file=params.get("key_file"),
                           create_key=params["create_key"], check_mode=check_mode)
    out = dict(changed=result["changed"], registry=result["source"], target=result["target"],
               copied=result["copied"], entries=result["entries"], source_head=result["source_head"],
               audit_head=result["audit_head"], key_fingerprint=result["key_fingerprint"],
               former_locations=result["former_locations"], ok=result["ok"])
    if diff:
        before = dict(target=result["target"], records={} if result["changed"] else result["copied"])
        after = dict(target=result["target"], records=result["copied"], audit_entries=result["entries"],
                     copied_from=result["source"])
        out["diff"] = dict(before=before, after=after) if result["changed"] else dict(before=after, after=after)
    return out


def _rekeyed(params, check_mode, diff):
    from ansible_collections.fenrir.fleet.plugins.module_utils.registry import rotate
    result = rotate(params["registry"], key_file=params.get("key_file"), new_key_file=params.get("new_key_file"),
                    check_mode=check_mode)
    out = dict(changed=result["changed"], registry=result["registry"], key_file=result["key_file"],
               key_fingerprint=result["key_fingerprint"],
               previous_key_fingerprint=result.get("previous_key_fingerprint"), records=result["records"],
               finished_interrupted=result["finished_interrupted"], audit_head=result["audit_head"])
    if diff:
        out["diff"] = dict(
            before=dict(key_file=result["key_file"], key_fingerprint=result.get("previous_key_fingerprint")),
            after=dict(key_file=result["key_file"], key_fingerprint=result["key_fingerprint"] or "(a new key)",
                       records_reencrypted=result["records"]))
    return out


def run(params, check_mode=False, diff=False):
    _refuse_foreign(params)
    try:
        if params["state"] == "copied":
            return _copied(params, check_mode, diff)
        return _rekeyed(params, check_mode, diff)
    except FleetError as exc:
        result = dict(registry=_shown(params["registry"]))
        if params.get("target"):
            result["target"] = _shown(params["target"])
        raise ModuleFailure(str(exc), result)


def _shown(location):
    try:
        return registry_location(location)
    except FleetError:
        return "(not a registry location)"
