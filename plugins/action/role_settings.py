# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fenrir.fleet.role_settings: a role's variables as Ansible resolved them for this host, in one result.

The contract (options, what is returned) is the documentation in plugins/modules/role_settings.py. The variables
are the task's own: Ansible computed them for this host and task (role defaults, inventory, play and role
variables, role parameters, extra vars, in its order of precedence); each is rendered by the task's templar.
"""

from __future__ import annotations

from ansible.errors import AnsibleError

from ansible_collections.fenrir.fleet.plugins.plugin_utils.controller_action import ControllerAction

ARGUMENT_SPEC = dict(
    prefix=dict(type="str", required=True),
    exclude=dict(type="list", elements="str", default=[]),
)


def gather(variables, prefix, exclude, render):
    """{name without ``prefix``: rendered value} of every variable in ``variables`` whose name starts with
    ``prefix``, those named in ``exclude`` left out. A value that cannot be rendered fails naming its variable
    (never showing the value)."""
    settings = {}
    for name in sorted(variables):
        if not name.startswith(prefix) or name in exclude:
            continue
        try:
            settings[name[len(prefix):]] = render(variables[name])
        except AnsibleError as exc:
            raise AnsibleError("variable %s: %s" % (name, getattr(exc, "message", None) or exc)) from None
    return settings


class ActionModule(ControllerAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, args, task_vars):
        if not args["prefix"]:
            raise AnsibleError("option prefix: must not be empty (it selects the role's variables)")
        settings = gather(task_vars, args["prefix"], set(args["exclude"]), self._templar.template)
        # A result to register, not ansible_facts: the facts of any action but set_fact go into the fact cache (on
        # disk with fact caching, as AWX runs jobs), and these hold node identities.
        return dict(changed=False, settings=settings)
