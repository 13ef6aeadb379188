"""The docker_host role against two freshly made stand-in Docker hosts (systemd + dockerd 20.10 + sshd in
containers, scripts/standin-hosts), over real SSH; everything asserted from outside: the docker CLI with
the operator bundle, the refusals, what listens on the hosts, dockerd's MainPID.

Hosts fenrir-dhit-a/b at 172.30.0.21/22 on fenrir-hosts-test (the Molecule scenario uses .11/.12).
Opt-in (they need the stand-in image, ~2 min to build once, and ~2 min of a 2-core machine):
FENRIR_DOCKER_HOST_TESTS=1, as `make docker-host-test` sets.
"""
import datetime
import json
import os
import subprocess

import pytest

from conftest import ROOT, VENV_BIN, Result

pytestmark = pytest.mark.skipif(os.environ.get("FENRIR_DOCKER_HOST_TESTS") != "1",
                                reason="stand-in Docker host tests are opt-in: FENRIR_DOCKER_HOST_TESTS=1 "
                                       "(make docker-host-test)")

HOSTS = {"fenrir-dhit-a": "172.30.0.21", "fenrir-dhit-b": "172.30.0.22"}
STANDIN = os.path.join(ROOT, "scripts", "standin-hosts")


def _run(argv, check=False, **kw):
    return subprocess.run(argv, capture_output=True, text=True, check=check, **kw)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    work = tmp_path_factory.mktemp("docker-hosts")
    env = dict(os.environ, FENRIR_STANDIN_DIR=str(work / "standin"))
    built = _run([os.path.join(ROOT, "scripts", "ensure-host-image")], timeout=900)
    assert built.returncode == 0, built.stderr[-2000:]
    up = _run([STANDIN, "up"] + ["%s=%s" % kv for kv in HOSTS.items()], env=env, timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        inventory = work / "inventory.yml"
        lines = ["all:", "  children:", "    docker_hosts:", "      vars:",
                 "        ansible_user: root",
                 "        ansible_ssh_private_key_file: %s" % (work / "standin" / "id_ed25519"),
                 "        ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                 "        ansible_python_interpreter: /usr/bin/python3",
                 "        docker_host_ca_dir: %s" % (work / "pki"),
                 "        docker_host_registry: %s" % (work / "fleet.db"),
                 "      hosts:"]
        for name, address in HOSTS.items():
            lines += ["        %s:" % name, "          ansible_host: %s" % address,
                      "          docker_host_bind_address: %s" % address]
        inventory.write_text("\n".join(lines) + "\n")
        yield dict(inventory=str(inventory), pki=work / "pki", env=env)
    finally:
        _run([STANDIN, "down"] + list(HOSTS), env=env, timeout=300)


def play(hosts, *args):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1",
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", hosts["inventory"],
                           os.path.join(ROOT, "playbooks", "docker_hosts.yml")] + list(args),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    return Result(proc)


def results(result):
    """docker_host_result of every host, from the playbook's closing debug task."""
    task = dict(result.tasks()).get("Result of every host") or {}
    return {h: r.get("docker_host_result") for h, r in task.items()}


def on_host(name, command):
    return _run(["docker", "exec", name, "sh", "-c", command]).stdout


def docker_cli(hosts, address, *tls):
    return _run(["docker"] + list(tls) + ["-H", "tcp://%s:2376" % address, "version", "--format",
                                          "{{.Server.Version}}"], timeout=60)


def bundle(hosts):
    d = hosts["pki"] / "operator"
    return ["--tlsverify", "--tlscacert", str(d / "ca.pem"), "--tlscert", str(d / "cert.pem"),
            "--tlskey", str(d / "key.pem")]


def test_bad_input_stops_every_host_before_anything_changes(hosts):
    result = play(hosts, "-e", json.dumps({"docker_host_bind_address": "0.0.0.0"}), "--limit", "fenrir-dhit-b")
    assert result.rc != 0
    assert "fenrir-dhit-b: missing overlay peer: docker_host_bind_address" in result.errors()
    # Another bad host stops the whole play: a's address is fine, b's option is the collection's.
    inv = open(hosts["inventory"]).read()
    bad = hosts["inventory"] + ".bad.yml"
    with open(bad, "w") as fh:
        fh.write(inv.replace("          docker_host_bind_address: 172.30.0.22",
                             "          docker_host_bind_address: 172.30.0.22\n"
                             "          docker_host_daemon_options: {tlsverify: false}"))
    result = play(dict(hosts, inventory=bad))
    assert result.rc != 0 and "fenrir-dhit-b: docker_host_daemon_options sets tlsverify" in result.errors()
    for name in HOSTS:
        assert on_host(name, "ls /etc/docker /etc/systemd/system/docker.service.d 2>&1").split() \
            .count("daemon.json") == 0, name
    assert not (hosts["pki"] / "ca-key.pem").exists()


def test_converge_prove_rerun_and_decommission(hosts):
    first = play(hosts)
    assert first.rc == 0, first.errors()
    for name, res in results(first).items():
        assert res["status"] == "connected" and res["problems"] == [], res
        assert res["endpoint"] == "tcp://%s:2376" % HOSTS[name]
        assert res["engine_version"].startswith("20.10.") and res["cert_fingerprint_sha256"].count(":") == 31

    pids = {name: on_host(name, "systemctl show -p MainPID --value docker").strip() for name in HOSTS}
    again = play(hosts)
    assert again.rc == 0 and again.changed() == 0, again.errors()
    assert pids == {name: on_host(name, "systemctl show -p MainPID --value docker").strip() for name in HOSTS}

    ca = str(hosts["pki"] / "operator" / "ca.pem")
    for name, address in HOSTS.items():
        ok = docker_cli(hosts, address, *bundle(hosts))
        assert ok.returncode == 0 and ok.stdout.startswith("20.10."), ok.stderr
        assert docker_cli(hosts, address, "--tlsverify", "--tlscacert", ca).returncode != 0  # no client cert
        assert docker_cli(hosts, address).returncode != 0  # plain TCP
        plain = _run(["curl", "-sS", "--max-time", "5", "http://%s:2376/_ping" % address])
        assert plain.stdout != "OK"
        listeners = on_host(name, "ss -Hltn 'sport = :2376'").split("\n")
        assert [line.split()[3] for line in listeners if line.strip()] == ["%s:2376" % address]

    gone = play(hosts, "-e", "docker_host_state=absent", "--limit", "fenrir-dhit-b")
    assert gone.rc == 0, gone.errors()
    assert results(gone)["fenrir-dhit-b"]["status"] == "decommissioned"
    assert docker_cli(hosts, HOSTS["fenrir-dhit-b"], *bundle(hosts)).returncode != 0
    assert on_host("fenrir-dhit-b", "ss -Hltn 'sport = :2376'").strip() == ""
    assert on_host("fenrir-dhit-b", "docker version --format '{{.Server.Version}}'").startswith("20.10.")
    # The other host is untouched.
    assert docker_cli(hosts, HOSTS["fenrir-dhit-a"], *bundle(hosts)).returncode == 0


def test_a_tampered_host_is_not_connected_and_a_converge_repairs_and_renews(hosts):
    """The host's own configuration is not evidence: a daemon that stopped verifying clients is caught by
    the probe (a dry run reports it, changes nothing); the next run repairs it, and renews a certificate that
    expires within docker_host_cert_renew_days."""
    name, address = "fenrir-dhit-a", HOSTS["fenrir-dhit-a"]
    old = on_host(name, "openssl x509 -noout -fingerprint -sha256 -in /etc/docker/server-cert.pem").strip()
    assert old.startswith("sha256 Fingerprint=") or old.startswith("SHA256 Fingerprint="), old
    old_fingerprint = old.split("=", 1)[1]
    on_host(name, "sed -i 's/\"tlsverify\": true/\"tlsverify\": false/' /etc/docker/daemon.json"
                  " && systemctl restart docker")

    dry = play(hosts, "--check", "--limit", name)
    assert dry.rc == 0, dry.errors()
    res = results(dry)[name]
    assert res["status"] == "disconnected"
    assert any("without a client certificate" in p for p in res["problems"]), res
    assert '"tlsverify": false' in on_host(name, "cat /etc/docker/daemon.json")

    renew = ["-e", "docker_host_cert_days=200", "-e", "docker_host_cert_renew_days=120", "--limit", name]
    fixed = play(hosts, *renew)
    assert fixed.rc == 0, fixed.errors()
    res = results(fixed)[name]
    assert res["status"] == "connected" and res["problems"] == []
    assert res["cert_fingerprint_sha256"] != old_fingerprint
    assert res["cert_fingerprint_sha256"] == on_host(
        name, "openssl x509 -noout -fingerprint -sha256 -in /etc/docker/server-cert.pem").strip().split("=", 1)[1]
    assert res["cert_not_after"] > (datetime.datetime.now(datetime.timezone.utc)
                                    + datetime.timedelta(days=199)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert docker_cli(hosts, address, "--tlsverify", "--tlscacert",
                      str(hosts["pki"] / "operator" / "ca.pem")).returncode != 0

    again = play(hosts, *renew)
    assert again.rc == 0 and again.changed() == 0, again.errors()
