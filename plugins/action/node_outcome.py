# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fenrir.fleet.node_outcome: a node's outcome of the fleet-wide work, reported as its host's own result.

The contract (options, what is returned) is the documentation in plugins/modules/node_outcome.py.
"""

from __future__ import annotations

from ansible.errors import AnsibleError

from ansible_collections.fenrir.fleet.plugins.plugin_utils.controller_action import ControllerAction

ARGUMENT_SPEC = dict(
    outcome=dict(type="dict"),
)
FIELDS = ("label", "changed", "failed")


def report(outcome):
    """The host's result for its node's ``outcome`` (``label``, ``changed``, ``failed``, ``reason``, ``result``);
    skipped without one (the node had no part in the run)."""
    if outcome is None:
        return dict(skipped=True, changed=False, msg="the node had no part in this run")
    missing = [k for k in FIELDS if k not in outcome]
    if missing:
        raise AnsibleError("option outcome: an outcome of fenrir.fleet.knarr_node_outcomes, without %s"
                           % ", ".join(missing))
    label, failed = outcome["label"], bool(outcome["failed"])
    reason = outcome.get("reason")
    result = dict(changed=bool(outcome["changed"]), failed=failed, node=outcome.get("result") or {})
    if failed:
        result["msg"] = "node %s: %s" % (label, reason or "failed (no reason given)")
    else:
        result["msg"] = "node %s: %s" % (label, "changed" if result["changed"] else "ok")
    return result


class ActionModule(ControllerAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, args, task_vars):
        return report(args["outcome"])
