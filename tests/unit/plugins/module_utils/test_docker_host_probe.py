"""docker_host_probe against small TLS servers of the test's own, on loopback: one that behaves like a
dockerd with --tlsverify, and the ways a daemon can be wrong (no client certificate wanted, plain HTTP,
a certificate for another address, a closed port)."""
import datetime
import http.server
import json
import socket
import ssl
import threading

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import docker_host_probe as dhp

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
import ipaddress

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _save(path, key=None, cert=None):
    with open(path, "wb") as fh:
        if key is not None:
            fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        else:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test ca")).issuer_name(_name("test ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(NOW - datetime.timedelta(minutes=5)).not_valid_after(NOW + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))

    def leaf(name, usage, ip=None):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(NOW - datetime.timedelta(minutes=5)).not_valid_after(NOW + datetime.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if ip:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        return _save(d / (name + "-key.pem"), key=key), _save(d / (name + ".pem"), cert=cert), cert

    server_key, server_cert, server = leaf("server", ExtendedKeyUsageOID.SERVER_AUTH, "127.0.0.1")
    other_key, other_cert, dummy = leaf("other", ExtendedKeyUsageOID.SERVER_AUTH, "127.0.0.2")
    client_key, client_cert, dummy = leaf("client", ExtendedKeyUsageOID.CLIENT_AUTH)
    return dict(ca=_save(d / "ca.pem", cert=ca), server_key=server_key, server_cert=server_cert,
                server_der=server.public_bytes(serialization.Encoding.DER), other_key=other_key,
                other_cert=other_cert, client_key=client_key, client_cert=client_cert,
                server_not_after=server.not_valid_after_utc)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/_ping":
            body = b"OK"
        elif self.path == "/version":
            body = json.dumps({"Version": "20.10.24+dfsg1", "ApiVersion": "1.41"}).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    context = None

    def finish_request(self, request, client_address):
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        try:
            _Handler(request, client_address, self)
        except (ssl.SSLError, OSError):
            pass

    def handle_error(self, request, client_address):
        pass


def _serve(context):
    server = _Server(("127.0.0.1", 0), _Handler)
    server.context = context
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _server_context(pki, verify=ssl.CERT_REQUIRED, cert="server"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki[cert + "_cert"], pki[cert + "_key"])
    ctx.load_verify_locations(pki["ca"])
    ctx.verify_mode = verify
    return ctx


@pytest.fixture
def serve():
    servers = []

    def start(context):
        s = _serve(context)
        servers.append(s)
        return s.server_address[1]
    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _probe(pki, port, **kw):
    return dhp.probe("127.0.0.1", port, pki["ca"], pki["client_cert"], pki["client_key"], timeout=5, **kw)


def test_a_daemon_that_wants_the_fleets_client_certificate_is_connected(pki, serve):
    port = serve(_server_context(pki))
    result = _probe(pki, port)
    assert result["problems"] == [], result
    assert result["status"] == "connected"
    assert result["engine_version"] == "20.10.24+dfsg1" and result["api_version"] == "1.41"
    assert result["cert_fingerprint_sha256"] == dhp.fingerprint(pki["server_der"])
    assert result["cert_not_after"] == pki["server_not_after"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert all(c["ok"] for c in result["checks"].values()) and set(result["checks"]) == set(dhp.CHECKS)
    assert result["endpoint"] == "tcp://127.0.0.1:%d" % port


def test_a_daemon_that_serves_without_a_client_certificate_is_not(pki, serve):
    port = serve(_server_context(pki, verify=ssl.CERT_OPTIONAL))
    result = _probe(pki, port)
    assert result["status"] == "disconnected"
    assert not result["checks"]["no_client_certificate_refused"]["ok"]
    assert result["checks"]["mutual_tls"]["ok"] and result["checks"]["foreign_ca_refused"]["ok"]
    assert any("without a client certificate" in p for p in result["problems"])


def test_a_daemon_that_serves_any_client_certificate_is_not(pki, serve):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
    ctx.verify_mode = ssl.CERT_NONE
    result = _probe(pki, serve(ctx))
    assert result["status"] == "disconnected"
    assert not result["checks"]["foreign_ca_refused"]["ok"]
    assert not result["checks"]["no_client_certificate_refused"]["ok"]


def test_plain_http_is_a_problem(pki, serve):
    port = serve(None)
    result = _probe(pki, port)
    assert result["status"] == "disconnected"
    assert not result["checks"]["plain_http_refused"]["ok"]
    assert not result["checks"]["mutual_tls"]["ok"]
    assert any("without TLS" in p for p in result["problems"])


def test_a_certificate_for_another_address_is_not_trusted(pki, serve):
    port = serve(_server_context(pki, cert="other"))
    result = _probe(pki, port)
    assert result["status"] == "disconnected"
    assert "not trusted" in result["checks"]["mutual_tls"]["detail"]
    assert result["checks"]["plain_http_refused"]["ok"]


def test_missing_material_and_a_closed_port_are_problems_not_errors(pki, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = dhp.probe("127.0.0.1", port, pki["ca"], str(tmp_path / "nope.pem"), pki["client_key"], timeout=2)
    assert result["status"] == "disconnected"
    assert "missing" in result["checks"]["mutual_tls"]["detail"]
    result = _probe(pki, port)
    assert "connection refused" in result["checks"]["mutual_tls"]["detail"]


def test_closed_and_open_ports(serve):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert dhp.probe_closed("127.0.0.1", port, 2)["status"] == "closed"
    open_port = serve(None)
    result = dhp.probe_closed("127.0.0.1", open_port, 2)
    assert result["status"] == "open" and result["problems"]


def test_bad_input_is_refused():
    with pytest.raises(dhp.ProbeError, match="literal IP"):
        dhp.probe("docker.example", 2376)
    with pytest.raises(dhp.ProbeError, match="port"):
        dhp.probe_closed("127.0.0.1", 0)


def test_the_foreign_certificate_is_made_in_memory():
    cert, key = dhp.foreign_client_pem()
    assert b"BEGIN CERTIFICATE" in cert and b"PRIVATE KEY" in key
    assert dhp.fingerprint(b"x").count(":") == 31
