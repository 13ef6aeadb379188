"""docker_common.py: the shared connection options and their DOCKER_* environment fallbacks.

The environment is set with monkeypatch (every DOCKER_* variable cleared first) and connection_params is
called as make_client calls it; make_client is checked with docker.DockerClient replaced by a recorder
(no engine is contacted)."""

import pytest
from types import SimpleNamespace

from ansible_collections.fenrir.fleet.plugins.module_utils import docker_common as dc


@pytest.fixture
def certs(tmp_path):
    """A DOCKER_CERT_PATH directory holding ca.pem, cert.pem and key.pem."""
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("-----BEGIN %s-----\n" % name)
    return tmp_path


DOCKER_VARS = ("DOCKER_HOST", "DOCKER_TLS", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_TLS_HOSTNAME",
               "FENRIR_DOCKER_CA_CERT", "FENRIR_DOCKER_CLIENT_CERT", "FENRIR_DOCKER_CLIENT_KEY")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in DOCKER_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def conn(monkeypatch):
    """connection_params(params) with exactly ``environ`` as the DOCKER_* environment."""
    def resolve(environ=None, **params):
        for name, value in (environ or {}).items():
            monkeypatch.setenv(name, value)
        return dc.connection_params(params)
    return resolve


def test_defaults_are_the_local_socket_without_tls(conn):
    assert conn() == dict(base_url="unix:///var/run/docker.sock", tls=False, timeout=60, warnings=[])


def test_docker_host_falls_back_to_the_environment_and_the_option_wins(conn):
    env = {"DOCKER_HOST": "tcp://127.0.0.1:2375"}
    assert conn(env)["base_url"] == "tcp://127.0.0.1:2375"
    assert conn(env, docker_host="tcp://127.0.0.2:2375")["base_url"] == "tcp://127.0.0.2:2375"


def test_an_explicit_environ_replaces_os_environ(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.9.9.9:2375")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    assert dc.connection_params({}, environ={}) == dict(base_url="unix:///var/run/docker.sock", tls=False,
                                                        timeout=60, warnings=[])
    assert dc.connection_params({}, environ={"DOCKER_HOST": "tcp://localhost:2375"})["base_url"] == \
        "tcp://localhost:2375"


def test_explicit_environ_is_used_for_docker_tls_too(monkeypatch):
    tls = dc.connection_params({"docker_host": "tcp://h:2376"}, environ={"DOCKER_TLS": "1"})["tls"]
    assert tls and tls["verify"] is False


def test_timeout_option(conn):
    assert conn(timeout=5)["timeout"] == 5


def test_docker_tls_verify_empty_is_off(conn):
    assert conn({"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": ""})["tls"] is False


@pytest.mark.parametrize("value", ["1", "0", "no", " "])
def test_docker_tls_verify_any_value_is_on_as_for_the_sdk(value, certs, conn):
    """The Docker CLI and SDK turn verification on for any non-empty DOCKER_TLS_VERIFY, even "0"."""
    env = {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": value, "DOCKER_CERT_PATH": str(certs)}
    assert conn(env)["tls"]["verify"] is True


def test_docker_tls_verify_on_uses_docker_cert_path(certs, conn):
    env = {"DOCKER_HOST": "tcp://dockerhost.example:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    tls = conn(env)["tls"]
    assert tls == dict(verify=True, ca_cert=str(certs / "ca.pem"), client_cert=str(certs / "cert.pem"),
                       client_key=str(certs / "key.pem"), assert_hostname="dockerhost.example")


def test_options_win_over_docker_cert_path(certs, tmp_path_factory, conn):
    mine = tmp_path_factory.mktemp("mine")
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
    tls = conn(env, docker_host="tcp://h:2376", ca_path=str(mine / "ca"), client_cert=str(mine / "c"),
               client_key=str(mine / "k"), tls_hostname="docker.internal")["tls"]
    assert tls["ca_cert"] == str(mine / "ca") and tls["client_cert"] == str(mine / "c")
    assert tls["client_key"] == str(mine / "k") and tls["assert_hostname"] == "docker.internal"


def test_tls_files_one_by_one_as_an_awx_credential_injects_them(certs, tmp_path_factory, conn):
    """AWX file injectors write each file under a name of its own: FENRIR_DOCKER_* name them one by one, ahead of
    DOCKER_CERT_PATH; an empty DOCKER_TLS_HOSTNAME (an optional credential field left empty) is no name."""
    awx = tmp_path_factory.mktemp("awx")
    env = {"DOCKER_HOST": "tcp://10.0.0.5:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs),
           "FENRIR_DOCKER_CA_CERT": str(awx / "tmpca"), "FENRIR_DOCKER_CLIENT_CERT": str(awx / "tmpcert"),
           "FENRIR_DOCKER_CLIENT_KEY": str(awx / "tmpkey"), "DOCKER_TLS_HOSTNAME": ""}
    assert conn(env)["tls"] == dict(verify=True, ca_cert=str(awx / "tmpca"), client_cert=str(awx / "tmpcert"),
                                    client_key=str(awx / "tmpkey"), assert_hostname="10.0.0.5")
    # An option given in the task still wins.
    assert conn(env, ca_path="/etc/mine/ca.pem")["tls"]["ca_cert"] == "/etc/mine/ca.pem"


def test_docker_cert_path_files_that_do_not_exist_are_not_used(tmp_path, conn):
    env = {"DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(tmp_path)}
    tls = conn(env, docker_host="tcp://h:2376")["tls"]
    assert tls == dict(verify=False, ca_cert=None, client_cert=None, client_key=None, assert_hostname="h")


def test_tls_without_verify_is_allowed_when_asked_with_a_warning(conn):
    for kw, env in ((dict(tls=True), {}), ({}, {"DOCKER_TLS": "yes"})):
        resolved = conn(env, docker_host="tcp://192.0.2.7:2376", **kw)
        assert resolved["tls"]["verify"] is False and resolved["tls"]["assert_hostname"] == "192.0.2.7"
        assert any("not checked" in w for w in resolved["warnings"])


def test_validate_certs_implies_tls(certs, conn):
    tls = conn(docker_host="tcp://h:2376", validate_certs=True, ca_path=str(certs / "ca.pem"))["tls"]
    assert tls["verify"] is True and tls["ca_cert"] == str(certs / "ca.pem")


def test_assert_hostname_from_an_https_address(conn):
    assert conn(docker_host="https://secure.example:2376", tls=True)["tls"]["assert_hostname"] == "secure.example"


@pytest.mark.parametrize("params, env", [
    (dict(tls=True), {}),
    (dict(docker_host="unix:///run/user/1000/docker.sock", tls=True), {}),
    ({}, {"DOCKER_TLS_VERIFY": "1"}),
    ({}, {"DOCKER_HOST": "unix:///var/run/docker.sock", "DOCKER_TLS": "1"}),
])
def test_tls_on_a_unix_socket_is_refused(params, env, conn):
    with pytest.raises(dc.DockerOptionsError, match="is a Unix socket: TLS options .* need a tcp:// or https:// address"):
        conn(env, **params)


def test_verify_without_a_ca_is_refused(tmp_path, conn):
    with pytest.raises(dc.DockerOptionsError, match="validate_certs is set but no CA was given"):
        conn(docker_host="tcp://h:2376", validate_certs=True)
    with pytest.raises(dc.DockerOptionsError, match="no CA was given"):
        conn({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)}, docker_host="tcp://h:2376")


@pytest.mark.parametrize("given", ["client_cert", "client_key"])
def test_client_cert_and_key_must_come_together(given, conn):
    with pytest.raises(dc.DockerOptionsError, match="client_cert and client_key must be given together"):
        conn(docker_host="tcp://h:2376", tls=True, **{given: "/etc/docker/x.pem"})


def test_cert_path_with_only_a_certificate_is_refused(tmp_path, conn):
    (tmp_path / "cert.pem").write_text("x")
    with pytest.raises(dc.DockerOptionsError, match="together"):
        conn({"DOCKER_TLS": "1", "DOCKER_CERT_PATH": str(tmp_path)}, docker_host="tcp://h:2376")


def test_docker_argument_spec_extends_a_copy():
    spec = dc.docker_argument_spec(name=dict(type="str"))
    assert set(spec) == set(dc.DOCKER_COMMON_ARGS) | {"name"}
    spec["tls"]["default"] = True
    assert dc.DOCKER_COMMON_ARGS["tls"]["default"] is False
    assert "tls_verify" in spec["validate_certs"]["aliases"] and "docker_url" in spec["docker_host"]["aliases"]


class Recorder:
    """docker.DockerClient, recording how it was made and what was done to its API client."""

    def __init__(self, **kw):
        Recorder.made = kw
        Recorder.last = self
        self.api = SimpleNamespace(trust_env=True, mounts={}, version=lambda api_version=True: {"ApiVersion": "1.41"})
        self.api.mount = self.api.mounts.__setitem__


def test_make_client_turns_tcp_into_https_and_builds_a_tls_config(certs, monkeypatch, conn):
    monkeypatch.setattr(dc.docker, "DockerClient", Recorder)
    conn({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}, docker_host="tcp://h.example:2376")
    dc.make_client(dict(docker_host="tcp://h.example:2376", timeout=7), max_pool_size=3)
    made = Recorder.made
    assert made["base_url"] == "https://h.example:2376" and made["timeout"] == 7 and made["max_pool_size"] == 3
    tls = made["tls"]
    assert tls.cert == (str(certs / "cert.pem"), str(certs / "key.pem"))
    assert tls.verify == str(certs / "ca.pem")
    # The CA given is the one used: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment must not win.
    assert Recorder.last.api.trust_env is False
    assert Recorder.last.api.mounts == {}  # the certificate is checked against the address dialled


def test_make_client_checks_the_certificate_against_tls_hostname(certs, monkeypatch, conn):
    monkeypatch.setattr(dc.docker, "DockerClient", Recorder)
    conn({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}, docker_host="tcp://10.0.0.7:2376")
    dc.make_client(dict(docker_host="tcp://10.0.0.7:2376", tls_hostname="docker-daemon-7"))
    adapter = Recorder.last.api.mounts["https://"]
    manager_kwargs = {}
    adapter.init_poolmanager(1, 1, **manager_kwargs)
    assert adapter.poolmanager.connection_pool_kw["assert_hostname"] == "docker-daemon-7"
    assert adapter.poolmanager.connection_pool_kw["server_hostname"] == "docker-daemon-7"


def test_make_client_plain_socket(monkeypatch):
    monkeypatch.setattr(dc.docker, "DockerClient", Recorder)
    dc.make_client({})
    assert Recorder.made["base_url"] == "unix:///var/run/docker.sock" and Recorder.made["tls"] is False


def test_make_client_explains_an_unreachable_engine(monkeypatch):
    def refuse(**kw):
        raise dc.DockerException("Connection refused")
    monkeypatch.setattr(dc.docker, "DockerClient", refuse)
    with pytest.raises(dc.DockerException, match="cannot reach the Docker engine at tcp://127.0.0.1:1 .*refused"):
        dc.make_client(dict(docker_host="tcp://127.0.0.1:1"))


# --------------------------------------------------------------------------- the strict rules

@pytest.mark.parametrize("url", ["http://127.0.0.1:2375", "ssh://root@h", "npipe:////./pipe/docker_engine", "h:2375"])
def test_only_unix_tcp_and_https_addresses(url, conn):
    with pytest.raises(dc.DockerOptionsError, match="only unix://, tcp:// and https://") as err:
        conn(docker_host=url)
    assert err.value.field == "docker_host"


def test_http_with_validate_certs_is_refused_not_sent_in_clear(certs, conn):
    with pytest.raises(dc.DockerOptionsError, match="only unix://, tcp:// and https://"):
        conn(docker_host="http://10.0.0.5:2376", validate_certs=True, ca_path=str(certs / "ca.pem"))


def test_plain_tcp_to_another_host_needs_insecure(conn):
    with pytest.raises(dc.DockerOptionsError, match="plain TCP to a host other than this one") as err:
        conn(docker_host="tcp://10.0.0.5:2375")
    assert err.value.field == "docker_host"
    assert conn(docker_host="tcp://10.0.0.5:2375", insecure=True)["tls"] is False
    assert conn(docker_host="tcp://[::1]:2375")["tls"] is False


def test_https_means_tls(conn):
    resolved = conn(docker_host="https://10.0.0.5:2376")
    assert resolved["tls"]["verify"] is False and resolved["warnings"]


def test_every_env_fallback_of_the_spec_is_honoured(conn):
    resolved = conn({"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS": "1", "DOCKER_TIMEOUT": "9",
                     "DOCKER_TLS_HOSTNAME": "daemon-1"})
    assert resolved["timeout"] == 9 and resolved["tls"]["assert_hostname"] == "daemon-1"
