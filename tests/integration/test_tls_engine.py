"""The shared Docker connection options against a second, real engine that speaks only mutual TLS.

A dockerd of the test's own listens on a loopback port with --tlsverify; its certificate is issued to
a name (docker-daemon-test), not to the address dialled, as for a daemon bound to one address. The
action group lets a play set the options once (module_defaults: group/fenrir.fleet.docker).
"""
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT, VENV_BIN

sys.path.insert(0, os.path.join(ROOT, "collections"))
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import DockerException, make_client  # noqa

DAEMON_NAME = "docker-daemon-test"
NETWORK = "fenrir-tlstest"
# The second daemon's own default bridge. Not "--bridge none": a dockerd started so removes the host's
# docker0, which the first engine's default network needs.
BRIDGE, BRIDGE_ADDRESS = "fenrir-tlsbr0", "172.25.99.1/24"


def _pki(directory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def save(path, key=None, cert=None):
        with open(os.path.join(directory, path), "wb") as fh:
            if key is not None:
                fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
            else:
                fh.write(cert.public_bytes(serialization.Encoding.PEM))
        return os.path.join(directory, path)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("fenrir test ca")).issuer_name(name("fenrir test ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))

    def leaf(cn, usage, sans=None):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=2))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    server_key, server = leaf(DAEMON_NAME, ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName(DAEMON_NAME)])
    client_key, client = leaf("fenrir-provisioner", ExtendedKeyUsageOID.CLIENT_AUTH)
    return dict(ca=save("ca.pem", cert=ca), server_cert=save("server-cert.pem", cert=server),
                server_key=save("server-key.pem", key=server_key), cert=save("cert.pem", cert=client),
                key=save("key.pem", key=client_key))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _remove_leftovers():
    """A TLS dockerd (and its directory) left by a test run that was killed."""
    found = subprocess.run(["pgrep", "-f", "dockerd --data-root %s/fenrir-tlsd-" % tempfile.gettempdir()],
                           capture_output=True, text=True, check=False).stdout.split()
    for pid in found:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    for name in os.listdir(tempfile.gettempdir()):
        if name.startswith("fenrir-tlsd-"):
            path = os.path.join(tempfile.gettempdir(), name)
            subprocess.run(["umount", "-R", "-l", path], capture_output=True, check=False)
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_engine():
    if not shutil.which("dockerd") or not shutil.which("ip"):
        pytest.skip("no dockerd or ip binary (scripts/ensure-docker installs docker.io; ip is Debian's iproute2)")
    _remove_leftovers()
    had_docker0 = os.path.exists("/sys/class/net/docker0")
    work = tempfile.mkdtemp(prefix="fenrir-tlsd-")
    pki = _pki(work)
    port = _free_port()
    for command in (["add", BRIDGE, "type", "bridge"], ["set", BRIDGE, "up"]):
        subprocess.run(["ip", "link"] + command, check=True, capture_output=True)
    subprocess.run(["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE], check=True, capture_output=True)
    log = open(os.path.join(work, "dockerd.log"), "wb")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", os.path.join(work, "data"), "--exec-root", os.path.join(work, "exec"),
         "--pidfile", os.path.join(work, "dockerd.pid"), "-H", "tcp://127.0.0.1:%d" % port,
         "--tlsverify", "--tlscacert", pki["ca"], "--tlscert", pki["server_cert"], "--tlskey", pki["server_key"],
         "--bridge", BRIDGE, "--iptables=false", "--ip-masq=false", "--ip-forward=false"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    options = dict(docker_host="tcp://127.0.0.1:%d" % port, validate_certs=True, ca_path=pki["ca"],
                   client_cert=pki["cert"], client_key=pki["key"], tls_hostname=DAEMON_NAME)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                make_client(options).api.ping()
                break
            except DockerException:
                if proc.poll() is not None or time.monotonic() > deadline:
                    with open(os.path.join(work, "dockerd.log"), "rb") as fh:
                        pytest.fail("the TLS dockerd did not come up: %s" % fh.read()[-2000:].decode(errors="replace"))
                time.sleep(0.3)
        yield dict(options=options, work=work)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        subprocess.run(["umount", "-R", "-l", os.path.join(work, "exec")], capture_output=True, check=False)
        subprocess.run(["umount", "-R", "-l", os.path.join(work, "data")], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        # The first engine is as it was: its default bridge is still there.
        assert os.path.exists("/sys/class/net/docker0") or not had_docker0, "the TLS dockerd removed docker0"


def test_mutual_tls_with_the_certificates_name(tls_engine):
    options = tls_engine["options"]
    assert make_client(options).api.version()["ApiVersion"]
    refused = {
        "the address is not the certificate's name": dict(options, tls_hostname=None),
        "another name": dict(options, tls_hostname="not-" + DAEMON_NAME),
        "no client certificate": dict(options, client_cert=None, client_key=None),
    }
    for why, params in refused.items():
        with pytest.raises(DockerException, match="cannot reach the Docker engine at https://127.0.0.1"):
            make_client(params).api.version()


def test_a_play_sets_the_connection_options_once_for_the_action_group(tls_engine, tmp_path):
    options = tls_engine["options"]
    playbook = tmp_path / "tls.yml"
    playbook.write_text("""---
- name: The fleet network on a TLS engine, connection options set once
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  module_defaults:
    group/fenrir.fleet.docker: %s
  tasks:
    - name: Network present
      fenrir.fleet.fleet_network:
        name: %s
        subnet: 172.25.9.0/24
        gateway: 172.25.9.1
      register: created
    - name: Network present again
      fenrir.fleet.fleet_network:
        name: %s
        subnet: 172.25.9.0/24
        gateway: 172.25.9.1
      register: again
    - name: Network absent
      fenrir.fleet.fleet_network:
        name: %s
        subnet: 172.25.9.0/24
        state: absent
    - name: It happened on the TLS engine, idempotently
      ansible.builtin.assert:
        that: [created.changed, not again.changed, created.network.subnet == '172.25.9.0/24']
""" % (json.dumps(options), NETWORK, NETWORK, NETWORK))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", str(playbook)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "changed=2" in proc.stdout
    # The network was made on the TLS engine, not on the local one.
    assert not make_client({}).api.networks(names=[NETWORK])

    # Without the options the modules talk to the local engine; a bad certificate name is a clear error.
    bad = dict(options, tls_hostname="not-" + DAEMON_NAME)
    playbook.write_text(playbook.read_text().replace(json.dumps(options), json.dumps(bad)))
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", "localhost,", str(playbook)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0 and "cannot reach the Docker engine at https://127.0.0.1" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_tenants_on_the_tls_engine_and_on_the_local_one_in_one_play(tls_engine, tmp_path):
    """Per-host tenants_docker: one tenant on the TLS engine, one on the local engine, one play (every engine checked
    before either changes), then a re-run with nothing to change, then both destroyed."""
    import docker
    import yaml
    options = tls_engine["options"]
    subprocess.run([os.path.join(ROOT, "scripts", "ensure-tenant-image")], check=True, capture_output=True)
    local, remote = docker.from_env(), make_client(options)
    remote.api.load_image(local.api.get_image("fenrir-tenant-http:latest"))  # no registry: the image travels
    spec = {"containers": [{"name": "app", "image": "fenrir-tenant-http:latest"}], "resources": {"cpu": 250,
                                                                                                 "memory": 32}}
    inventory = tmp_path / "hosts.yml"
    local_vars = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": dict(tenants_prefix="ttest", tenants_registry=str(tmp_path / "fleet.db"), tenants_start_settle=1.0),
        "hosts": {"localhost": local_vars}, "children": {"tenants": {"vars": local_vars, "hosts": {
            "on-tls": {"tenants_spec": spec, "tenants_docker": options}, "on-local": {"tenants_spec": spec}}}}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))

    def play(*args):
        proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", str(inventory),
                               os.path.join(ROOT, "playbooks", "tenants.yml")] + list(args),
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        return proc.stdout

    try:
        out = play()
        assert "Several engines - check every engine before changing any" in out
        on_tls = remote.containers.get("ttest-tenant-on-tls")
        assert on_tls.attrs["HostConfig"]["NanoCpus"] == 250_000_000 and on_tls.status == "running"
        assert not remote.containers.list(all=True, filters={"name": "ttest-tenant-on-local"})
        assert local.containers.get("ttest-tenant-on-local").status == "running"
        assert not local.containers.list(all=True, filters={"name": "ttest-tenant-on-tls"})
        assert "changed=0" in play()
        play("-e", "tenants_state=absent")
        assert not remote.containers.list(all=True, filters={"label": "ttest.tenant_id"})
    finally:
        for c in local.containers.list(all=True, filters={"label": "ttest.tenant_id"}):
            if c.labels.get("fenrir.fleet.registry") == str(tmp_path / "fleet.db"):
                c.remove(force=True)
