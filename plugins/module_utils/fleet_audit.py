# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.fleet_audit module: verify the registry's audit chain (and that it still holds a head kept
elsewhere); accept records changed outside it."""

from __future__ import annotations

import re

from ansible_collections.fenrir.fleet.plugins.module_utils import drift
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import (
    registry_argument_spec, registry_location)

NAME = "fleet_audit"
REQUIREMENTS = ("cryptography",)
ARGUMENT_SPEC = dict(argument_spec=registry_argument_spec(
    fail_on_mismatch=dict(type="bool", default=True),
    accept=dict(type="list", elements="str", default=[]),
    rebuild_index=dict(type="bool", default=False),
    expect_head=dict(type="dict", options=dict(
        height=dict(type="int", required=True),
        hash=dict(type="str", required=True),
    )),
))
HASH = re.compile(r"^[0-9a-f]{64}$")


def run(params, check_mode=False, diff=False):
    shown = registry_location(params["registry"])
    expect = params.get("expect_head")
    if expect is not None and (expect["height"] < 0 or not HASH.match(expect["hash"])):
        raise ModuleFailure("field 'expect_head': give an audit_head as this module returned it: height >= 0 and "
                            "hash, 64 hex digits", dict(registry=shown))
    try:
        if params["accept"] or params["rebuild_index"]:
            result = drift.audit_accept(params["registry"], params["key_file"], params["accept"],
                                        params["rebuild_index"], check_mode, expect_head=expect)
        else:
            result = dict(drift.audit(params["registry"], params["key_file"], expect_head=expect), changed=False,
                          accepted=[], index_rebuilt=False)
    except FleetError as exc:
        raise ModuleFailure(str(exc), dict(registry=shown))
    if not result["ok"] and params["fail_on_mismatch"]:
        hint = ("" if result["label"] is None else " If you mean to keep the record as it is now, run "
                "fenrir.fleet.fleet_audit with accept: [%s]" % result["label"])
        raise ModuleFailure("the audit chain of %s is broken: %s.%s" % (result["registry"], result["problem"], hint),
                            result)
    return result
