#!/usr/bin/env python3
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fenrir-tenant-http: a tiny tenant workload for fenrir.fleet's tenant tests (Python's http.server).

    tenant-http [serve]   serve HTTP on TENANT_HTTP_PORT (default 8080): GET / -> JSON about the tenant,
                          GET /health -> 200 ok, or 503 once unhealthy
    tenant-http health    exit 0 when /health answers 200 (for a Docker health check), else 1

Switches (environment), to make the failures an operator must be told about:
    TENANT_EXIT_CODE=N       exit with code N at once, without serving
    TENANT_OOM=1             allocate memory until the kernel kills the process (OOM)
    TENANT_HEALTHY_FOR=S     /health answers 503 once S seconds have passed since start
    TENANT_NAME=...          shown by GET /
SIGTERM (docker stop) ends the server cleanly with exit code 0.
"""

import json
import os
import signal
import socket
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.monotonic()
PORT = int(os.environ.get("TENANT_HTTP_PORT", "8080"))


def healthy():
    limit = os.environ.get("TENANT_HEALTHY_FOR")
    return not limit or time.monotonic() - STARTED < float(limit)


class Handler(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/health":
            ok = healthy()
            self._send(200 if ok else 503, {"status": "ok" if ok else "unhealthy"})
        else:
            self._send(200, {"tenant": os.environ.get("TENANT_NAME", ""), "hostname": socket.gethostname(),
                             "uptime": round(time.monotonic() - STARTED, 3)})

    def log_message(self, fmt, *args):  # one line per request on stdout
        sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))


def oom():
    hog = []
    sys.stdout.write("allocating until the memory limit is hit\n")
    sys.stdout.flush()
    while True:
        hog.append(b"x" * (1 << 20))  # written, so the pages are really used


def serve():
    code = os.environ.get("TENANT_EXIT_CODE")
    if code:
        sys.stdout.write("exiting with code %s as TENANT_EXIT_CODE asks\n" % code)
        sys.stdout.flush()
        sys.exit(int(code))
    if os.environ.get("TENANT_OOM") == "1":
        oom()
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)

    def stop(*dummy):
        server.server_close()
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    sys.stdout.write("serving on port %d\n" % PORT)
    sys.stdout.flush()
    server.serve_forever()


def health():
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/health" % PORT, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except Exception as exc:  # 503 raises too
        sys.stdout.write("unhealthy: %s\n" % exc)
        return 1


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command == "serve":
        serve()
    elif command == "health":
        sys.exit(health())
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
