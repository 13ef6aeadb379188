# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names: what a label may be, and the container a node's label becomes.

A node's ``label`` is its name everywhere -- the registry key, the inventory host of the registry
inventory, the DNS name -- and its container is ``fenrir-<label>`` (its ``server_id``). Both rules
live here and nowhere else.
"""

from __future__ import annotations

import re

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError

CONTAINER_PREFIX = "fenrir-"
# A label the collection provisions: a DNS label short enough that fenrir-<label> stays within 63.
LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,54}[a-z0-9])?$")
# What Docker accepts after "fenrir-" in a container name: enough to decommission a node whose label an
# older tool chose (the original skill did not check labels), never enough to provision one.
REMOVABLE_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,56}$")


def validate_label(label, removal=False):
    """A label the collection provisions under; with ``removal``, any label a fenrir container can carry."""
    if removal and isinstance(label, str) and REMOVABLE_LABEL_RE.fullmatch(label):
        return label
    if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
        raise SpecError(label, "label", "must be 1-56 characters of a-z, 0-9 and '-', starting and ending with a "
                        "letter or digit (it becomes the container name fenrir-<label> and a DNS name)")
    return label


def is_valid_label(label):
    return isinstance(label, str) and LABEL_RE.fullmatch(label) is not None


def container_name(label):
    """The container (and server_id) of a node."""
    return CONTAINER_PREFIX + label
