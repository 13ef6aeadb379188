# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prove a managed Docker host from outside: the controller's client certificate is served, everything
else is refused.

A host is ``connected`` only when every check passes:

* ``mutual_tls``: ``GET /_ping`` and ``GET /version`` over TLS with the controller's client certificate,
  the server's certificate verified against the fleet CA and its subjectAltName against the address;
* ``no_client_certificate_refused``: the same request without a client certificate is refused. Under
  TLS 1.3 the handshake completes and the server's refusal arrives with the first read, so a real
  request is made, not only a handshake;
* ``foreign_ca_refused``: the same request with a client certificate of another CA (made here, in
  memory, thrown away) is refused;
* ``plain_http_refused``: plain HTTP to the port gets no answer from the API.

With ``expect='closed'`` (a decommissioned host) the only check is that the port accepts no connection.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import ipaddress
import json
import os
import socket
import ssl
import tempfile

CHECKS = ("mutual_tls", "no_client_certificate_refused", "foreign_ca_refused", "plain_http_refused")


NAME = "docker_host_probe"
ARGUMENT_SPEC = dict(
    argument_spec=dict(
        address=dict(type="str", required=True),
        port=dict(type="int", default=2376),
        ca_path=dict(type="path"),
        client_cert=dict(type="path"),
        client_key=dict(type="path", no_log=False),
        refusals=dict(type="bool", default=True),
        expect=dict(type="str", choices=["serving", "closed"], default="serving"),
        timeout=dict(type="float", default=10.0),
    ),
    required_if=[("expect", "serving", ("ca_path", "client_cert", "client_key"))],
)


def requirements(params):
    """cryptography only for the certificate of another CA (refusals on a serving host)."""
    return ("cryptography",) if params.get("expect") == "serving" and params.get("refusals") else ()


class ProbeError(Exception):
    """Bad input: the probe cannot even be attempted."""


def _endpoint(address, port):
    ip = ipaddress.ip_address(address)
    return "tcp://%s:%d" % ("[%s]" % ip if ip.version == 6 else ip, port)


def _describe(exc):
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "the daemon's certificate is not trusted: %s" % (exc.verify_message or exc)
    if isinstance(exc, ssl.SSLError):
        return "TLS error: %s" % (exc.reason or exc)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "no answer (timed out)"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the daemon closed the connection without an answer"
    if isinstance(exc, ConnectionResetError):
        return "the daemon reset the connection"
    return "%s: %s" % (type(exc).__name__, exc)


def _request(address, port, context, path, timeout):
    """(status, body, peer certificate DER, peer certificate dict) of one GET over TLS."""
    conn = http.client.HTTPSConnection(address, port, context=context, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "docker"})
        der = conn.sock.getpeercert(binary_form=True) if conn.sock else None
        info = conn.sock.getpeercert() if conn.sock else None
        resp = conn.getresponse()
        return resp.status, resp.read(65536), der, info
    finally:
        conn.close()


def _context(ca_path=None, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_path:
        ctx.load_verify_locations(cafile=ca_path)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def _not_after(info):
    if not info or "notAfter" not in info:
        return None
    seconds = ssl.cert_time_to_seconds(info["notAfter"])
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(der):
    """SHA-256 fingerprint as openssl prints it (AB:CD:...)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def foreign_client_pem():
    """(certificate PEM, key PEM) of a client certificate signed by a CA made here and thrown away."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("fenrir probe: another CA")).issuer_name(name("fenrir probe: another CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(minutes=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("fenrir-controller")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(minutes=30))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def _refused(address, port, context, timeout):
    """(True, how) when a request over ``context`` is refused; (False, what answered) when it is served."""
    try:
        status, body, _der, _info = _request(address, port, context, "/_ping", timeout)
    except (OSError, http.client.HTTPException) as exc:
        return True, _describe(exc)
    if 200 <= status < 300:
        return False, "the daemon answered HTTP %d (%r)" % (status, body[:40])
    return True, "HTTP %d" % status


def _plain_http_refused(address, port, timeout):
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("GET", "/_ping", headers={"Host": "docker"})
        resp = conn.getresponse()
        status, body = resp.status, resp.read(200)
    except (OSError, http.client.HTTPException) as exc:
        return True, _describe(exc)
    finally:
        conn.close()
    if 200 <= status < 300:
        return False, "the daemon answered plain HTTP %d (%r): its API is served without TLS" % (status, body[:40])
    return True, "HTTP %d (%s)" % (status, body.decode("utf-8", "replace").strip()[:80])


def _check_address(address, port):
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise ProbeError("address must be one literal IP address, got %r" % (address,))
    if not 0 < int(port) < 65536:
        raise ProbeError("port must be 1-65535, got %r" % (port,))
    return str(ip)


def probe_closed(address, port=2376, timeout=5.0):
    """A decommissioned host: the port accepts no connection."""
    address = _check_address(address, port)
    result = dict(endpoint=_endpoint(address, port), status="closed", problems=[], checks={})
    try:
        with socket.create_connection((address, port), timeout=timeout):
            pass
    except (OSError, socket.timeout) as exc:
        result["checks"]["port_closed"] = dict(ok=True, detail=_describe(exc))
        return result
    result["checks"]["port_closed"] = dict(ok=False, detail="the port accepts connections")
    result["status"] = "open"
    result["problems"].append("%s still accepts connections" % result["endpoint"])
    return result


def probe(address, port=2376, ca_path=None, client_cert=None, client_key=None, timeout=10.0, refusals=True):
    """Prove the daemon at address:port; see the module's docstring. Never raises for an unreachable host."""
    address = _check_address(address, port)
    result = dict(endpoint=_endpoint(address, port), status="disconnected", engine_version=None, api_version=None,
                  cert_fingerprint_sha256=None, cert_not_after=None, memory_bytes=None, ncpu=None, checks={},
                  problems=[])
    checks = result["checks"]

    def record(name, ok, detail, problem=None):
        checks[name] = dict(ok=ok, detail=detail)
        if not ok:
            result["problems"].append(problem or detail)

    missing = [p for p in (ca_path, client_cert, client_key) if not p or not os.path.isfile(p)]
    if missing:
        record("mutual_tls", False, "the controller's TLS material is missing: %s"
               % ", ".join(str(p) for p in missing))
    else:
        try:
            ctx = _context(ca_path, client_cert, client_key)
            status, body, der, info = _request(address, port, ctx, "/_ping", timeout)
            if status != 200 or body.strip() != b"OK":
                raise ValueError("GET /_ping answered HTTP %d %r" % (status, body[:80]))
            result["cert_fingerprint_sha256"] = fingerprint(der)
            result["cert_not_after"] = _not_after(info)
            status, body, _der, _info = _request(address, port, ctx, "/version", timeout)
            if status != 200:
                raise ValueError("GET /version answered HTTP %d %r" % (status, body[:80]))
            version = json.loads(body.decode("utf-8"))
            result["engine_version"] = version.get("Version")
            result["api_version"] = version.get("ApiVersion")
            status, body, _der, _info = _request(address, port, ctx, "/info", timeout)
            if status == 200:  # the host's capacity, for placement (not a condition of being connected)
                try:
                    info = json.loads(body.decode("utf-8")) if len(body) < 65536 else {}
                except ValueError:
                    info = {}
                result["memory_bytes"] = info.get("MemTotal")
                result["ncpu"] = info.get("NCPU")
            record("mutual_tls", True, "GET /_ping and /version answered with the controller's certificate")
        except (OSError, http.client.HTTPException) as exc:
            record("mutual_tls", False, "mutual TLS to %s failed: %s" % (result["endpoint"], _describe(exc)))
        except ValueError as exc:
            record("mutual_tls", False, "mutual TLS to %s: %s" % (result["endpoint"], exc))

    if refusals:
        # Without a client certificate (the server's certificate still verified when the CA is at hand).
        ca = ca_path if ca_path and os.path.isfile(ca_path) else None
        ok, detail = _refused(address, port, _context(ca), timeout)
        record("no_client_certificate_refused", ok, detail,
               "%s serves a request without a client certificate: %s" % (result["endpoint"], detail))

        with tempfile.TemporaryDirectory(prefix="fenrir-probe-") as tmp:
            cert_pem, key_pem = foreign_client_pem()
            cert_file, key_file = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
            with open(cert_file, "wb") as fh:
                fh.write(cert_pem)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key_pem)
            ok, detail = _refused(address, port, _context(ca, cert_file, key_file), timeout)
        record("foreign_ca_refused", ok, detail,
               "%s serves a client certificate of another CA: %s" % (result["endpoint"], detail))

        ok, detail = _plain_http_refused(address, port, timeout)
        record("plain_http_refused", ok, detail, "%s: %s" % (result["endpoint"], detail))

    if not result["problems"]:
        result["status"] = "connected"
    return result


def run(params, check_mode=False, diff=False):
    """The module: proving changes nothing; a failed check is a result (status disconnected), not a failure."""
    from ansible_collections.fenrir.fleet.plugins.module_utils.errors import ModuleFailure
    from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import missing_library
    missing = missing_library(requirements(params))
    if missing:
        raise ModuleFailure("docker_host_probe: the Python library %s is required to make a certificate of another "
                            "CA for the refusal checks" % missing[0])
    try:
        if params["expect"] == "closed":
            result = probe_closed(params["address"], params["port"], params["timeout"])
        else:
            result = probe(params["address"], params["port"], params["ca_path"], params["client_cert"],
                           params["client_key"], params["timeout"], params["refusals"])
    except ProbeError as exc:
        raise ModuleFailure("docker_host_probe: %s" % exc)
    return dict(result, changed=False)
