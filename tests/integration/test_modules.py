"""fenrir.fleet.node_identity and fenrir.fleet.fleet_network against the real engine."""
import base64
import io
import json
import os
import subprocess
import sys
import tarfile

import docker
import pytest

from conftest import CLIENT, NETWORK, ROOT, VENV_BIN, remove_leftovers

sys.path.insert(0, os.path.join(ROOT, "collections"))
from ansible_collections.fenrir.fleet.plugins.module_utils import identity  # noqa: E402


def adhoc(module, args, *flags):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible"), "localhost", "-m", "fenrir.fleet.%s" % module,
                           "-a", json.dumps(args), "-e", "ansible_python_interpreter=%s" % sys.executable] + list(flags),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    return proc.stdout, data["plays"][0]["tasks"][0]["hosts"]["localhost"]


@pytest.fixture
def container():
    remove_leftovers()
    c = CLIENT.containers.create("knarr-cluster-node:latest", name="fenrir-it-identity",
                                 command=["python3", "-c", "import time; time.sleep(600)"],
                                 labels={"fenrir.fleet.role": "knarr-node", "fenrir.fleet.label": "it-identity"})
    c.start()
    yield c
    c.remove(force=True)


def test_node_identity_injects_once_and_never_shows_the_seed(container):
    seed = identity.new_seed()
    b64 = base64.b64encode(identity.build_node_db(seed)).decode()
    args = {"container": container.name, "node_db_b64": b64}

    out, planned = adhoc("node_identity", args, "--check", "--diff")
    assert planned["changed"] and planned["node_id"] == identity.node_id_from_seed(seed)
    with pytest.raises(Exception):
        container.get_archive("/opt/knarr/node.db")  # check mode wrote nothing

    out, first = adhoc("node_identity", args, "--diff")
    assert first["changed"] and first["source"] == "node_db_b64"
    stream, dummy = container.get_archive("/opt/knarr/node.db")
    member = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
    f = member.getmembers()[0]
    assert identity.read_seed(member.extractfile(f).read()) == seed and f.mode & 0o777 == 0o600

    out2, second = adhoc("node_identity", args, "--diff")
    assert second["changed"] is False and second["node_id"] == first["node_id"]
    for text in (out, out2):
        assert seed.hex() not in text and base64.b64encode(seed).decode() not in text and b64 not in text

    # A different identity replaces it; bad input is refused naming the field.
    other = base64.b64encode(identity.build_node_db(identity.new_seed())).decode()
    dummy, third = adhoc("node_identity", dict(args, node_db_b64=other))
    assert third["changed"] and third["node_id"] != first["node_id"]
    dummy, bad = adhoc("node_identity", dict(args, node_db_b64=base64.b64encode(b"not sqlite").decode()))
    assert bad.get("failed") and "node_db_b64" in bad["msg"] and "SQLite" in bad["msg"]


def test_network_of_the_same_name_with_another_subnet_is_refused():
    remove_leftovers()
    pool = docker.types.IPAMPool(subnet="172.24.7.0/24", gateway="172.24.7.1")
    CLIENT.networks.create(NETWORK, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[pool]))
    try:
        dummy, res = adhoc("fleet_network", {"name": NETWORK, "subnet": "172.24.0.0/24", "gateway": "172.24.0.1"})
        assert res.get("failed")
        assert "field 'subnet'" in res["msg"] and "172.24.7.0/24" in res["msg"], res["msg"]
        dummy, same = adhoc("fleet_network", {"name": NETWORK, "subnet": "172.24.7.0/24", "gateway": "172.24.7.1"})
        assert same["changed"] is False and same["network"]["subnet"] == "172.24.7.0/24"
    finally:
        remove_leftovers()


def _certificate(seed):
    """A self-signed certificate keyed by ``seed``, as knarr makes cert.pem."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID
    key = Ed25519PrivateKey.from_private_bytes(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.node_id_from_seed(seed)[:16])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)).sign(key, None))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _put(container, files):
    from ansible_collections.fenrir.fleet.plugins.module_utils.container_files import make_tar
    container.put_archive("/opt/knarr", make_tar({p: (d, 0o600) for p, d in files.items()}, "/opt/knarr"))


def _exists(container, path):
    return container.exec_run(["test", "-e", path]).exit_code == 0


def test_node_identity_removes_a_certificate_made_for_another_identity(container):
    old, new = identity.new_seed(), identity.new_seed()
    cert, key = _certificate(old)
    _put(container, {"/opt/knarr/node.db": identity.build_node_db(old), "/opt/knarr/cert.pem": cert,
                     "/opt/knarr/key.pem": key})
    args = {"container": container.name, "node_db_b64": base64.b64encode(identity.build_node_db(new)).decode()}
    dummy, planned = adhoc("node_identity", args, "--check")
    assert planned["changed"] and planned["removed"] == ["/opt/knarr/cert.pem", "/opt/knarr/key.pem"]
    assert _exists(container, "/opt/knarr/cert.pem")  # check mode removed nothing
    dummy, done = adhoc("node_identity", args)
    assert done["changed"] and done["removed"] == ["/opt/knarr/cert.pem", "/opt/knarr/key.pem"]
    assert not _exists(container, "/opt/knarr/cert.pem") and not _exists(container, "/opt/knarr/key.pem")

    # A certificate of the identity being put stays; a stopped container with a stale one is refused, unchanged.
    cert, key = _certificate(new)
    _put(container, {"/opt/knarr/cert.pem": cert, "/opt/knarr/key.pem": key, "/opt/knarr/node.db": b"x"})
    dummy, kept = adhoc("node_identity", args)
    assert kept["changed"] and kept["removed"] == [] and _exists(container, "/opt/knarr/cert.pem")
    other = base64.b64encode(identity.build_node_db(old)).decode()
    container.stop(timeout=1)
    dummy, refused = adhoc("node_identity", dict(args, node_db_b64=other))
    assert refused.get("failed") and "start it (or remove it)" in refused["msg"], refused
    stream, dummy = container.get_archive("/opt/knarr/node.db")
    member = tarfile.open(fileobj=io.BytesIO(b"".join(stream)))
    assert identity.read_seed(member.extractfile(member.getmembers()[0]).read()) == new
