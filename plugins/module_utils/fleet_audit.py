# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.fleet_audit module: verify the registry's audit chain; accept records changed outside it."""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils import drift
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import registry_argument_spec

NAME = "fleet_audit"
REQUIREMENTS = ("cryptography",)
ARGUMENT_SPEC = dict(argument_spec=registry_argument_spec(
    fail_on_mismatch=dict(type="bool", default=True),
    accept=dict(type="list", elements="str", default=[]),
    rebuild_index=dict(type="bool", default=False),
))


def run(params, check_mode=False, diff=False):
    try:
        if params["accept"] or params["rebuild_index"]:
            result = drift.audit_accept(params["registry"], params["key_file"], params["accept"],
                                        params["rebuild_index"], check_mode)
        else:
            result = dict(drift.audit(params["registry"], params["key_file"]), changed=False, accepted=[],
                          index_rebuilt=False)
    except FleetError as exc:
        raise ModuleFailure(str(exc), dict(registry=params["registry"]))
    if not result["ok"] and params["fail_on_mismatch"]:
        raise ModuleFailure("the audit chain of %s is broken: %s. If you mean to keep a node's record as it is now, "
                            "run fenrir.fleet.fleet_audit with accept: [<label>]" % (result["registry"], result["problem"]),
                            result)
    return result
