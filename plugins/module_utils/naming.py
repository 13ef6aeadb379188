# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names: what a label may be, and the container a node's label becomes; the same for tenants.

A node's ``label`` is its name everywhere -- the registry key, the inventory host of the registry
inventory, the DNS name -- and its container is ``fenrir-<label>`` (its ``server_id``). A tenant's
``tenant_id`` is its name everywhere too, and its container is ``<prefix>-tenant-<tenant_id>``
(seed 001). These rules live here and nowhere else.
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


# --------------------------------------------------------------------------- tenants

TENANT_INFIX = "-tenant-"
# The container name is a DNS label (it is also the container's hostname): at most 63 characters.
TENANT_NAME_MAX = 63
# A tenant prefix names the container and namespaces the tenant labels (<prefix>.tenant_id): no dots.
TENANT_PREFIX_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?$")
TENANT_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# Where the previous container waits during a recreate: a name no tenant id can produce ('.' is not
# allowed in one), so it can never be another tenant's container.
TENANT_ASIDE_SUFFIX = ".previous"


def validate_tenant_prefix(prefix):
    if not isinstance(prefix, str) or not TENANT_PREFIX_RE.fullmatch(prefix):
        raise SpecError(None, "prefix", "must be 1-24 characters of a-z, 0-9 and '-', starting and ending with a "
                        "letter or digit (it starts every tenant container name and label), got %r" % (prefix,))
    return prefix


def max_tenant_id_length(prefix):
    return TENANT_NAME_MAX - len(prefix) - len(TENANT_INFIX)


def validate_tenant_id(tenant_id, prefix):
    """A tenant id the collection provisions under ``prefix``: <prefix>-tenant-<id> stays a DNS label."""
    longest = max_tenant_id_length(prefix)
    if not isinstance(tenant_id, str) or not TENANT_ID_RE.fullmatch(tenant_id) or len(tenant_id) > longest:
        raise SpecError(tenant_id, "tenant_id", "must be 1-%d characters of a-z, 0-9 and '-', starting and ending "
                        "with a letter or digit (it becomes the container name %s%s<tenant_id> and a DNS name)"
                        % (longest, prefix, TENANT_INFIX), kind="tenant")
    return tenant_id


def tenant_container_name(prefix, tenant_id):
    """The container of a tenant (seed 001: {label_prefix}-tenant-{tenant_id})."""
    return prefix + TENANT_INFIX + tenant_id


def tenant_aside_name(prefix, tenant_id):
    """The name a tenant's previous container has while its replacement proves itself."""
    return tenant_container_name(prefix, tenant_id) + TENANT_ASIDE_SUFFIX
