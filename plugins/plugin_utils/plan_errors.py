# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A plan filter's failure as data, for the role task that must hide the plan but not the failure.

The roles compute their plan once, in a ``set_fact`` with ``no_log`` (the plan holds identities and secrets), and
an ``assert`` shows what is wrong. ``no_log`` hides a failing task's message too, so the filter is asked to
return ``{"error": message}`` instead of failing (``errors='return'``); its messages name the host, the node or
tenant and the variable, never a secret value.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

ERRORS = ("fail", "return")


def plan_or_error(build, errors, *args):
    """``build(*args)``; with ``errors='return'`` an invalid input gives ``{"error": message}`` instead."""
    if errors not in ERRORS:
        raise AnsibleFilterError("errors: %r is not one of %s" % (errors, ", ".join(ERRORS)))
    try:
        return build(*args)
    except AnsibleFilterError as exc:
        if errors == "fail":
            raise
        return {"error": exc.message}
