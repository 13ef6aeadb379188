# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.knarr_image module: the node images are on the engine, before anything else is done.

Nothing is ever pulled (the machines this collection runs on need reach no registry): an image that is not
there is refused, naming the nodes that need it, before a network, an address or a container is made.

With ``engines`` (a fleet over several Docker hosts) every engine gets the images its nodes need, all engines at
once: a host that lacks an image *ID* gets it copied over its TLS API from the ``source`` -- the controller's own
engine (``docker save`` streamed straight into the host's ``load``) or an image archive the operator names --,
never holding the image in memory.  A host that cannot be reached or cannot load it is reported in
``failed_engines`` (its nodes fail later with that reason); the other hosts go on.
"""

from __future__ import annotations

import json
import tarfile
import threading

from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (
    APIError, DockerException, NotFound, docker_argument_spec, make_client, run_with_engine)
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.fleet_hosts import (
    close_all, describe, engines_argument_spec, is_local, on_each_engine)

NAME = "knarr_image"
REQUIREMENTS = ("docker",)
CHUNK = 1024 * 1024
ARGUMENT_SPEC = dict(argument_spec=docker_argument_spec(
    images=dict(type="dict", required=True),
    source=dict(type="str", choices=["engine", "archive"], default="engine"),
    archive=dict(type="path"),
    **engines_argument_spec()
), required_if=[("source", "archive", ("archive",))])


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


# --------------------------------------------------------------------------- copies to Docker hosts

def archive_ids(path):
    """{repo:tag: image id} of an image archive (``docker save`` format), read from its manifest without
    loading the layers."""
    try:
        with tarfile.open(path, "r:*") as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
    except (OSError, KeyError, tarfile.TarError, ValueError, TypeError) as exc:
        raise FleetError("%s is not an image archive (docker save): %s" % (path, exc), field="archive")
    ids = {}
    for entry in manifest:
        config = entry.get("Config") or ""
        digest = config.rsplit("/", 1)[-1].split(".", 1)[0]
        for tag in entry.get("RepoTags") or []:
            ids[tag] = "sha256:" + digest
    return ids


def _file_chunks(path):
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                return
            yield chunk


def load_stream(api, chunks):
    """Feed a ``docker save`` stream into the engine's ``load``; raises FleetError with the engine's words."""
    try:
        for message in api.load_image(chunks, quiet=True):
            if isinstance(message, dict) and (message.get("error") or message.get("errorDetail")):
                raise FleetError(str(message.get("error") or message.get("errorDetail")))
    except (APIError, DockerException, OSError) as exc:
        raise FleetError(describe(exc))


def _need(params, engine):
    return list(engine.get("images") or sorted(params["images"]))


def copy_to_engines(params, check_mode):
    """Every engine holds the image IDs its nodes need; missing ones are copied from the source."""
    images = params["images"]
    engines = list(params["engines"])
    lock = threading.Lock()
    source = dict(ids=None, client=None, problem=None)

    def source_ids():
        with lock:
            if source["ids"] is None and source["problem"] is None:
                try:
                    if params["source"] == "archive":
                        held = archive_ids(params["archive"])
                        source["ids"] = {name: held.get(name) for name in images}
                    else:
                        source["client"] = make_client(params)
                        source["ids"] = image_ids(source["client"].api, sorted(images))
                except (FleetError, DockerException, OSError) as exc:
                    source["problem"] = "the image source cannot be read: %s" % describe(exc)
            return source["ids"]

    def one(engine, client):
        have = image_ids(client.api, _need(params, engine))
        copied = []
        for image, image_id in sorted(have.items()):
            if is_local(engine) and params["source"] == "engine":
                if image_id is None:
                    raise FleetError("image %s is not present on the controller's engine; build it "
                                     "(scripts/ensure-node-image) -- nothing is ever pulled" % image)
                continue
            want = (source_ids() or {}).get(image)
            if want is None:
                where = params["archive"] if params["source"] == "archive" else "the controller's engine"
                raise FleetError("image %s lacks here and cannot be copied: %s"
                                 % (image, source["problem"] or "it is not in %s" % where))
            if image_id == want:
                continue
            copied.append(image)
            if check_mode:
                have[image] = want
                continue
            if params["source"] == "archive":
                chunks = _file_chunks(params["archive"])
            else:
                chunks = source["client"].api.get_image(image, chunk_size=CHUNK)
            try:
                load_stream(client.api, chunks)
            except FleetError as exc:
                raise FleetError("cannot load image %s: %s" % (image, exc.message))
            have[image] = image_ids(client.api, [image])[image]
            if have[image] != want:
                raise FleetError("loaded image %s, but it has the ID %s, not %s" % (image, have[image], want))
        return have, copied

    try:
        done, failed = on_each_engine(params, engines, one, skip=params.get("failed_engines"))
    finally:
        if source["client"] is not None:
            close_all(dict(source=source["client"]))
    copied = {name: got[1] for name, got in done.items() if got[1]}
    return dict(changed=bool(copied), engines={name: got[0] for name, got in done.items()}, copied=copied,
                failed_engines=failed)


def run(params, check_mode=False, diff=False):
    """The module: changes nothing (or copies images to Docker hosts), fails naming the nodes whose image is
    missing on the single engine."""
    if params.get("engines"):
        try:
            return copy_to_engines(params, check_mode)
        except FleetError as exc:
            raise ModuleFailure(str(exc))
    return run_with_engine(params, lambda client: dict(changed=False, images=check_present(client.api, params["images"])))
