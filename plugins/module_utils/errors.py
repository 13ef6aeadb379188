# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one error type of the collection's logic: what was wrong, and where.

Every refusal names the object it is about (a node, a Docker host, a tenant) and the field, so a
module can hand the message to the operator as it is. An error about input that belongs to no
object (a payload, a pipeline flag) names only the field -- never "node None".
"""

from __future__ import annotations


class FleetError(Exception):
    """Bad input or a refused change.  ``label`` names the object, ``field`` the setting."""

    kind = "node"  # what ``label`` names: node, host, tenant

    def __init__(self, message, label=None, field=None, kind=None):
        self.message = message
        self.label = label
        self.field = field
        if kind is not None:
            self.kind = kind
        super().__init__(self.where() + message)

    def where(self):
        parts = []
        if isinstance(self.label, (list, tuple)) and len(self.label) == 1:
            parts.append("%s %r" % (self.kind, self.label[0]))
        elif isinstance(self.label, (list, tuple)):  # several objects share the problem
            parts.append("%ss %s" % (self.kind, ", ".join(repr(label) for label in self.label)))
        elif self.label is not None:
            parts.append("%s %r" % (self.kind, self.label))
        if self.field is not None:
            parts.append("field %r" % (self.field,))
        return ", ".join(parts) + ": " if parts else ""

    @property
    def bare_message(self):  # the message without where it is
        return self.message


class SpecError(FleetError):
    """A setting that cannot be used (argument order kept from the original: label, field, message)."""

    def __init__(self, label, field, message, kind=None):
        super().__init__(message, label=label, field=field, kind=kind)


class ModuleFailure(Exception):
    """A module run that fails; ``result`` is what the module returns with the failure (msg included)."""

    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = dict(result or {}, msg=msg)
