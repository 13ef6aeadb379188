# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.knarr_image module: the node images are on the engine, before anything else is done.

Nothing is ever pulled (the machines this collection runs on need reach no registry): an image that is not
there is refused, naming the nodes that need it, before a network, an address or a container is made.
"""

from __future__ import annotations

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (
    NotFound, docker_argument_spec, run_with_engine)
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError

NAME = "knarr_image"
REQUIREMENTS = ("docker",)
ARGUMENT_SPEC = dict(argument_spec=docker_argument_spec(
    images=dict(type="dict", required=True),
))


def image_ids(api, names):
    """{image: id or None} for the images named, one inspect each."""
    found = {}
    for name in names:
        try:
            found[name] = api.inspect_image(name)["Id"]
        except NotFound:
            found[name] = None
    return found


def check_present(api, images):
    """``images``: {image: [labels of the nodes that use it]}. Returns {image: id}; refuses a missing one."""
    for name, users in images.items():
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise FleetError("%r is not an image name" % (name,), label=(users or [None])[0], field="image")
    ids = image_ids(api, sorted(images))
    missing = [name for name, image_id in ids.items() if image_id is None]
    if missing:
        users = sorted({label for name in missing for label in images[name] or []})
        raise FleetError("%s not present on the Docker engine; build %s first (scripts/ensure-node-image) -- "
                         "nothing is ever pulled" % (", ".join(missing), "it" if len(missing) == 1 else "them"),
                         label=users or None, field="image")
    return ids


def run(params, check_mode=False, diff=False):
    """The module: changes nothing, fails naming the nodes whose image is missing."""
    return run_with_engine(params, lambda client: dict(changed=False, images=check_present(client.api, params["images"])))
