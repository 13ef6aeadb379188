# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each host's value of a role variable, as the role would see it on that host (for run_once filters).

A role that works once per play for all its hosts (knarr_node, tenants) templates its variables on one
host; these helpers give every other host its own value instead of that host's.
"""

from __future__ import annotations


class CachedHostvars(dict):
    """hostvars, each host's variables looked up once (every lookup of hostvars[host] merges them anew)."""

    def __init__(self, hostvars):
        super().__init__()
        self.hostvars = hostvars.hostvars if isinstance(hostvars, CachedHostvars) else hostvars

    def __missing__(self, host):
        vars_ = self[host] = self.hostvars[host]
        return vars_


class HostSettings:
    """Each host's value of a role variable, resolved the way the role would see it on that host.

    A run_once task templates its variables in the context of one host, but ``hostvars`` holds only
    each host's inventory variables, facts and extra vars -- not role defaults, play or task vars.
    So a host's own value comes from ``hostvars``; a host without one takes the value the play gives
    the role (``context``: the variables as templated for ``context_host``, keyed without ``prefix``),
    unless that value is ``context_host``'s own inventory value, in which case it takes the role default
    (``role_defaults``, keyed by full variable name). Variables named in ``host_named`` default to the
    inventory host name.
    """

    def __init__(self, hostvars, context, context_host=None, role_defaults=None, prefix="", host_named=()):
        hostvars = self.hostvars = hostvars if isinstance(hostvars, CachedHostvars) else CachedHostvars(hostvars)
        self.context_host = context_host
        self.prefix = prefix
        self.host_named = tuple(host_named)
        self.context = context or {}
        self.role_defaults = role_defaults or {}
        own = hostvars[context_host] if context_host is not None and role_defaults is not None else {}
        self._fallback = {}
        for var, value in self.context.items():
            name = prefix + var
            if name in own and own[name] == value:
                value = self.role_defaults.get(name)  # context_host's own value: not the play's
            self._fallback[var] = value

    def get(self, host, var):
        vars_ = self.hostvars[host]
        if self.prefix + var in vars_:
            return vars_[self.prefix + var]
        if var in self.host_named:
            return host  # the role's default: the inventory host name
        return self._fallback.get(var)

    def play_value(self, var, hosts=()):
        """The value the play gives the role, for what belongs to no host (e.g. a list of items given to the play).

        The context host's own inventory value is not the play's -- unless every other host of ``hosts`` has the
        same (an extra var or an ``all`` group var is in every host's variables)."""
        value = self.context.get(var)
        name = self.prefix + var
        if self.context_host is None or self._fallback.get(var) == value:
            return value
        own = self.hostvars[self.context_host]
        others = [h for h in hosts if h != self.context_host]
        if name in own and all(name in self.hostvars[h] and self.hostvars[h][name] == value for h in others):
            return value
        return self._fallback.get(var)
