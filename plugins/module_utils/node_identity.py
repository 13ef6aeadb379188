# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fenrir.fleet.node_identity module: pick or make a knarr identity, validate it, put it into a container."""

from __future__ import annotations

import base64
import hmac
import posixpath

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils.container_files import (
    identity_of, make_tar, read_file, stat_file)
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import docker_argument_spec, run_with_engine
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry
from ansible_collections.fenrir.fleet.plugins.module_utils.registry_options import registry_location

NAME = "node_identity"
REQUIREMENTS = ("cryptography",)
ARGUMENT_SPEC = dict(
    argument_spec=docker_argument_spec(
        container=dict(type="str"),
        path=dict(type="str", default="/opt/knarr/node.db"),
        mode=dict(type="raw", default="0600"),
        node_db_b64=dict(type="str", no_log=True),
        registry=dict(type="str", aliases=["db"],
                      deprecated_aliases=[dict(name="db", version="2.0.0", collection_name="fenrir.fleet")]),
        key_file=dict(type="path", no_log=False),
        label=dict(type="str"),
        generate=dict(type="bool", default=True),
        return_content=dict(type="bool", default=False),
    ),
    required_by=dict(registry=["label"]),
)


def _file_mode(value):
    """A file mode from an octal string ("0600") or a number (YAML reads an unquoted 0600 as 384)."""
    if value is None or value == "":
        return 0o600
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(c not in "01234567" for c in text):
            raise FleetError("%r is not an octal file mode such as '0600' (quote it in YAML)" % (value,), field="mode")
        mode = int(text, 8)
    if not 0 <= mode <= 0o7777:
        raise FleetError("%r is not a file mode (0000-7777)" % (value,), field="mode")
    return mode


def _certificate_of(seed, cert_pem):
    """Whether a PEM certificate's key is the Ed25519 key of ``seed`` (knarr's cert.pem for that identity)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    try:
        key = x509.load_pem_x509_certificate(cert_pem).public_key()
    except ValueError:
        return False
    mine = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return isinstance(key, Ed25519PublicKey) and key.public_bytes(Encoding.Raw, PublicFormat.Raw) == mine


def stale_certificate(api, container, directory, seed):
    """The cert.pem/key.pem beside a node.db that were made for another identity ([] when none is there, or
    when cert.pem is that of ``seed``). knarr makes them from its seed only when they are missing: left there,
    a node given a new node.db would still show the old identity's key."""
    cert_path, key_path = posixpath.join(directory, "cert.pem"), posixpath.join(directory, "key.pem")
    cert = read_file(api, container, cert_path)
    key_there = stat_file(api, container, key_path) is not None
    if cert is not None and _certificate_of(seed, cert[0]):
        return []
    return [p for p, there in ((cert_path, cert is not None), (key_path, key_there)) if there]


def remove_files(api, container, paths, who):
    """Remove files from a running container (the Docker API has no delete: one ``rm`` in it)."""
    state = (api.inspect_container(container).get("State") or {})
    if not state.get("Running"):
        raise FleetError("container %s holds %s made for another identity, and files can be removed only from a "
                         "running container; start it (or remove it) and run again"
                         % (container, " and ".join(posixpath.basename(p) for p in paths)), label=who, field="container")
    exec_id = api.exec_create(container, ["rm", "-f", "--"] + list(paths), stdout=True, stderr=True)["Id"]
    output = api.exec_start(exec_id)
    code = api.exec_inspect(exec_id).get("ExitCode")
    if code != 0:
        raise FleetError("removing %s from container %s failed (exit %s): %s" % (
            ", ".join(paths), container, code, (output or b"").decode("utf-8", "replace").strip()[:200]),
            label=who, field="container")


def node_identity(params, client, check_mode):
    """The node_identity module: pick or make an identity, validate it, put it into a container.

    The identity comes from ``node_db_b64``, else the registry's record of ``label``, else the node.db the
    container already holds, else a fresh one (when ``generate``). With a registry, the chosen identity is
    kept there (encrypted) and the record's node_id follows it.
    """
    label = params.get("label")
    container = params.get("container")
    who = label or container  # how errors name the node
    path = params.get("path") or "/opt/knarr/node.db"
    mode = _file_mode(params.get("mode"))
    try:
        seed, source = None, None
        if params.get("node_db_b64"):
            seed, source = ident.seed_from_b64(params["node_db_b64"], who), "node_db_b64"
        current = None
        if container:
            try:
                current = read_file(client.api, container, path)
            except Exception as exc:  # NotFound for the container itself, API errors
                raise FleetError("cannot read %s from container %s: %s" % (path, container, getattr(exc, "explanation", exc)),
                                 label=who, field="container")
        current_seed = identity_of(current[0]) if current else None

        def fresh():
            if not params.get("generate", True):
                raise FleetError("no identity given, none in the registry or the container, and generate is false",
                                 label=who, field="node_db_b64")
            return ident.new_seed()

        registry_changed = False
        if params.get("registry"):
            if not label:
                raise FleetError("required with registry", field="label")
            with Registry(params["registry"], key_file=params.get("key_file"), check_mode=check_mode) as reg:
                if reg.get(label) is None:
                    raise FleetError("is not in the registry %s" % registry_location(reg.path), label=label,
                                     field="label")
                with reg.transaction():
                    stored = reg.get_seed(label)
                    if seed is None and stored is None and current_seed is not None:
                        seed, source = current_seed, "container"
                    if seed is None and stored is None:
                        seed, source = fresh(), "generated"
                    seed, registry_changed = reg.ensure_identity(label, seed)
                    source = source or "registry"
                    node_id = ident.node_id_from_seed(seed)
                    if reg.get(label)["node_id"] != node_id:
                        registry_changed = reg.set_fields(label, node_id=node_id) or registry_changed
        if seed is None and current_seed is not None:
            seed, source = current_seed, "container"
        if seed is None:
            seed, source = fresh(), "generated"
        node_id = ident.node_id_from_seed(seed)
        changed = registry_changed
        container_changed = False
        stale = []
        if container:
            same = current is not None and current_seed is not None and current[1] == mode and \
                hmac.compare_digest(current_seed, seed)
            if not same:
                container_changed = changed = True
                directory = posixpath.dirname(path)
                stale = stale_certificate(client.api, container, directory, seed)
                if not check_mode:
                    if stale:
                        remove_files(client.api, container, stale, who)
                    # Into the file's directory, not '/': a read-only container takes archives into volumes only.
                    client.api.put_archive(container, directory,
                                           make_tar({path: (ident.build_node_db(seed), mode)}, directory))
        result = dict(
            changed=changed, node_id=node_id, source=source, container=container, path=path if container else None,
            removed=stale,
            diff=dict(before=dict(node_id=ident.node_id_from_seed(current_seed) if current_seed else None,
                                  present=current is not None),
                      after=dict(node_id=node_id, present=True)) if container_changed else dict(before={}, after={}),
        )
        if params.get("return_content"):
            result["node_db_b64"] = base64.b64encode(ident.build_node_db(seed)).decode("ascii")
        return result
    except FleetError as exc:
        raise ModuleFailure(str(exc))


def run(params, check_mode=False, diff=False):
    """The module; a Docker engine is contacted only when a container is given."""
    if params.get("container"):
        return run_with_engine(params, lambda client: node_identity(params, client, check_mode), diff=diff)
    result = node_identity(params, None, check_mode)
    if not diff:
        result.pop("diff", None)
    return result
