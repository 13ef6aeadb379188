#!/usr/bin/env python3
"""Stand-in for the real ``knarr serve`` (P2P agent node), used by fenrir.fleet tests.

Installed in the knarr-cluster-node image as /usr/local/bin/knarr.

    knarr serve  --config /opt/knarr/knarr.toml
    knarr health --config /opt/knarr/knarr.toml
    knarr --version

Node protocol (TCP, node.host:node.port): newline-delimited JSON, one request
object per line, one response line per request, many requests per connection.

    {"op": "status"}
      -> {"ok": true, "node_id": "<hex>", "label": ..., "location": ...,
          "advertise_host": ..., "port": 9000, "skills": ["echo", ...]}
    {"op": "call", "skill": "echo", "input": {...}}
      -> {"ok": true, "output": {...}}
    anything wrong -> {"ok": false, "error": "<message>"}

A request's optional "id" is copied into its response. Lines over 1 MiB get an
error response and the connection is closed.

Cockpit (HTTP/1.1, cockpit.bind:cockpit.port, off when port is 0):
GET /api/status, GET /api/skills; Bearer auth when cockpit.auth_token is set.

Exit status: 0 clean stop (SIGTERM/SIGINT), 1 health check failed,
2 usage or config error, 3 identity problem, 4 skill failed to load,
5 cannot listen / runtime dependency missing.

Only the standard library and ``cryptography`` (imported lazily) are used.
"""

import json
import os
import sys

VERSION = "knarr-standin 0.1.0"
MAX_LINE = 1024 * 1024  # 1 MiB, excluding the newline
MAX_HTTP_HEADER = 64 * 1024
MAX_HTTP_BODY = 1024 * 1024

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_CONFIG = 2
EXIT_IDENTITY = 3
EXIT_SKILL = 4
EXIT_RUNTIME = 5

KNOWN_KEYS = {
    "node": {"host", "port", "advertise_host", "storage"},
    "cockpit": {"port", "bind", "auth_token"},
    "fenrir": {"label", "location"},
}
SKILL_KEYS = {"handler", "description", "tags", "price"}

# Skill handlers live in the config directory; don't litter it with __pycache__.
sys.dont_write_bytecode = True


class Refuse(Exception):
    """Startup must stop: message for stderr, and an exit status."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def out(msg):
    print(msg, flush=True)


def warn(msg):
    print(f"knarr: warning: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# configuration


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def load_config(path, warnings=True):
    import tomllib

    path = os.path.abspath(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise Refuse(EXIT_CONFIG, f"config file {path} does not exist")
    except tomllib.TOMLDecodeError as e:
        raise Refuse(EXIT_CONFIG, f"config file {path} is not valid TOML: {e}")
    except OSError as e:
        raise Refuse(EXIT_CONFIG, f"cannot read config file {path}: {e.strerror or e}")

    def section(name):
        v = raw.get(name, {})
        if not isinstance(v, dict):
            raise Refuse(EXIT_CONFIG, f"config: [{name}] must be a table")
        return v

    if warnings:
        for name, value in raw.items():
            if name == "skills":
                continue
            if name not in KNOWN_KEYS:
                warn(f"config: ignoring unknown section or key '{name}'")
            elif isinstance(value, dict):
                for key in value:
                    if key not in KNOWN_KEYS[name]:
                        warn(f"config: ignoring unknown key '{name}.{key}'")

    node, cockpit, fenrir = section("node"), section("cockpit"), section("fenrir")
    skills_raw = section("skills")

    cfg = {"path": path, "dir": os.path.dirname(path)}
    cfg["host"] = node.get("host", "0.0.0.0")
    cfg["port"] = node.get("port", 9000)
    cfg["advertise_host"] = node.get("advertise_host")
    cfg["storage"] = node.get("storage", "node.db")
    cfg["cockpit_port"] = cockpit.get("port", 0)
    cfg["cockpit_bind"] = cockpit.get("bind", "127.0.0.1")
    cfg["auth_token"] = cockpit.get("auth_token")
    cfg["label"] = fenrir.get("label")
    cfg["location"] = fenrir.get("location")

    if not isinstance(cfg["host"], str) or not cfg["host"]:
        raise Refuse(EXIT_CONFIG, "config: node.host must be a non-empty string")
    if not _is_int(cfg["port"]) or not 1 <= cfg["port"] <= 65535:
        raise Refuse(EXIT_CONFIG, "config: node.port must be an integer 1..65535")
    if cfg["advertise_host"] is not None and not isinstance(cfg["advertise_host"], str):
        raise Refuse(EXIT_CONFIG, "config: node.advertise_host must be a string")
    if not isinstance(cfg["storage"], str) or not cfg["storage"]:
        raise Refuse(EXIT_CONFIG, "config: node.storage must be a non-empty string")
    if not _is_int(cfg["cockpit_port"]) or not 0 <= cfg["cockpit_port"] <= 65535:
        raise Refuse(EXIT_CONFIG, "config: cockpit.port must be an integer 0..65535")
    if not isinstance(cfg["cockpit_bind"], str) or not cfg["cockpit_bind"]:
        raise Refuse(EXIT_CONFIG, "config: cockpit.bind must be a non-empty string")
    if cfg["auth_token"] is not None and not isinstance(cfg["auth_token"], str):
        raise Refuse(EXIT_CONFIG, "config: cockpit.auth_token must be a string")
    if cfg["auth_token"] == "":
        cfg["auth_token"] = None
    for key in ("label", "location"):
        if cfg[key] is not None and not isinstance(cfg[key], str):
            raise Refuse(EXIT_CONFIG, f"config: fenrir.{key} must be a string")

    cfg["storage"] = os.path.join(cfg["dir"], cfg["storage"])

    skills = {}
    for name, spec in skills_raw.items():
        if not isinstance(spec, dict):
            raise Refuse(EXIT_SKILL, f"skill '{name}': [skills.{name}] must be a table")
        if warnings:
            for key in spec:
                if key not in SKILL_KEYS:
                    warn(f"config: ignoring unknown key 'skills.{name}.{key}'")
        handler = spec.get("handler")
        if not isinstance(handler, str) or ":" not in handler:
            raise Refuse(
                EXIT_SKILL,
                f"skill '{name}': handler must be \"relative/path.py:function\", got {handler!r}",
            )
        tags = spec.get("tags", [])
        if isinstance(tags, str):
            tags = [tags]
        skills[name] = {
            "handler": handler,
            "description": spec.get("description", ""),
            "tags": list(tags) if isinstance(tags, list) else [],
            "price": spec.get("price", 0),
        }
    cfg["skills"] = skills
    return cfg


# --------------------------------------------------------------------------
# identity


def load_identity(db_path):
    """Return node_id (hex SHA-256 of the raw Ed25519 public key)."""
    import sqlite3
    import urllib.parse

    if not os.path.exists(db_path):
        raise Refuse(EXIT_IDENTITY, f"identity database {db_path} does not exist")
    if not os.path.isfile(db_path):
        raise Refuse(EXIT_IDENTITY, f"identity database {db_path} is not a regular file")

    def read(params):
        uri = "file:" + urllib.parse.quote(db_path) + "?" + params
        conn = sqlite3.connect(uri, uri=True)
        try:
            return conn.execute("SELECT key_bytes FROM node_identity LIMIT 2").fetchall()
        finally:
            conn.close()

    try:
        try:
            rows = read("mode=ro")
        except sqlite3.OperationalError as e:
            # A WAL-mode database in a read-only directory/mount cannot get its
            # -shm file; read the main file as immutable instead.
            if "unable to open" not in str(e) and "readonly" not in str(e):
                raise
            rows = read("mode=ro&immutable=1")
    except sqlite3.DatabaseError as e:
        msg = str(e)
        if "no such table" in msg:
            msg = "it has no node_identity table"
        elif "not a database" in msg:
            msg = "it is not an SQLite database"
        raise Refuse(EXIT_IDENTITY, f"cannot read identity from {db_path}: {msg}")

    if not rows:
        raise Refuse(EXIT_IDENTITY, f"identity database {db_path}: node_identity has no row")
    if len(rows) > 1:
        raise Refuse(
            EXIT_IDENTITY, f"identity database {db_path}: node_identity has more than one row"
        )
    seed = rows[0][0]
    if not isinstance(seed, bytes):
        raise Refuse(
            EXIT_IDENTITY,
            f"identity database {db_path}: key_bytes is {type(seed).__name__}, not a 32-byte blob",
        )
    if len(seed) != 32:
        raise Refuse(
            EXIT_IDENTITY,
            f"identity database {db_path}: key_bytes is {len(seed)} bytes, expected 32",
        )

    try:
        import hashlib

        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    except ImportError as e:
        raise Refuse(EXIT_RUNTIME, f"python 'cryptography' is not available: {e}")

    pub = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    del seed
    return hashlib.sha256(pub).hexdigest()


# --------------------------------------------------------------------------
# skills


def load_skills(cfg, node_id):
    import importlib.util
    import inspect

    loaded = {}
    for name in sorted(cfg["skills"]):
        spec = cfg["skills"][name]
        rel, _, func_name = spec["handler"].rpartition(":")
        path = os.path.normpath(os.path.join(cfg["dir"], rel))
        where = f"skill '{name}' (handler {spec['handler']!r})"
        if not os.path.isfile(path):
            raise Refuse(EXIT_SKILL, f"{where}: file {path} does not exist")
        try:
            mod_name = "knarr_skill_" + "".join(c if c.isalnum() else "_" for c in name)
            mspec = importlib.util.spec_from_file_location(mod_name, path)
            if mspec is None or mspec.loader is None:
                raise ImportError(f"cannot import {path}")
            module = importlib.util.module_from_spec(mspec)
            handler_dir = os.path.dirname(path)
            if handler_dir not in sys.path:
                sys.path.append(handler_dir)
            sys.modules[mod_name] = module
            mspec.loader.exec_module(module)
        except (Exception, SystemExit) as e:
            raise Refuse(EXIT_SKILL, f"{where} failed to load: {type(e).__name__}: {e}")
        func = getattr(module, func_name, None)
        if func is None or not callable(func):
            raise Refuse(EXIT_SKILL, f"{where}: {path} has no callable '{func_name}'")

        wants_ctx = False
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):
            params = []
        positional = [
            p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if any(p.kind == p.VAR_POSITIONAL for p in params) or len(positional) >= 2:
            wants_ctx = True
        elif len(positional) < 1:
            raise Refuse(EXIT_SKILL, f"{where}: handler must accept (input_data[, ctx])")

        loaded[name] = {
            "func": func,
            "ctx": {"skill": name, "node_id": node_id} if wants_ctx else None,
        }
        out(f"knarr: skill {name} loaded from {path}:{func_name}")
    return loaded


# --------------------------------------------------------------------------
# server


class Node:
    def __init__(self, cfg, node_id, skills):
        self.cfg = cfg
        self.node_id = node_id
        self.skills = skills
        self.conn_tasks = set()

    def status(self):
        return {
            "ok": True,
            "node_id": self.node_id,
            "label": self.cfg["label"],
            "location": self.cfg["location"],
            "advertise_host": self.cfg["advertise_host"],
            "port": self.cfg["port"],
            "skills": sorted(self.skills),
        }

    def skills_info(self):
        return {
            "ok": True,
            "skills": [
                {
                    "name": n,
                    "description": self.cfg["skills"][n]["description"],
                    "tags": self.cfg["skills"][n]["tags"],
                    "price": self.cfg["skills"][n]["price"],
                }
                for n in sorted(self.skills)
            ],
        }

    async def call(self, req):
        import inspect

        name = req.get("skill")
        if not isinstance(name, str):
            return {"ok": False, "error": "call: 'skill' must be a string"}
        skill = self.skills.get(name)
        if skill is None:
            return {"ok": False, "error": f"unknown skill: {name}"}
        data = req.get("input", {})
        if not isinstance(data, dict):
            return {"ok": False, "error": "call: 'input' must be a JSON object"}
        try:
            if skill["ctx"] is not None:
                result = skill["func"](data, dict(skill["ctx"]))
            else:
                result = skill["func"](data)
            if inspect.isawaitable(result):
                result = await result
        except Exception as e:  # a handler must never take the node down
            return {"ok": False, "error": f"skill {name} failed: {type(e).__name__}: {e}"}
        if not isinstance(result, dict):
            return {
                "ok": False,
                "error": f"skill {name} returned {type(result).__name__}, expected an object",
            }
        return {"ok": True, "output": result}

    async def dispatch(self, line):
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            return {"ok": False, "error": f"bad JSON: {e}"}
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        op = req.get("op")
        if op == "status":
            resp = self.status()
        elif op == "call":
            resp = await self.call(req)
        else:
            resp = {"ok": False, "error": f"unknown op: {op!r}"}
        if "id" in req:
            resp["id"] = req["id"]
        return resp

    @staticmethod
    def encode(resp):
        try:
            return (json.dumps(resp) + "\n").encode()
        except (TypeError, ValueError) as e:
            err = {"ok": False, "error": f"response is not JSON-serialisable: {e}"}
            if "id" in resp:
                try:
                    json.dumps(resp["id"])
                    err["id"] = resp["id"]
                except (TypeError, ValueError):
                    pass
            return (json.dumps(err) + "\n").encode()

    def _track(self):
        import asyncio

        task = asyncio.current_task()
        self.conn_tasks.add(task)
        task.add_done_callback(self.conn_tasks.discard)

    async def _refuse_and_linger(self, reader, writer, resp):
        """Send an error, half-close, and discard what the peer is still sending
        (briefly) so closing doesn't turn into a RST that eats the response."""
        import asyncio

        writer.write(self.encode(resp))
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        loop = asyncio.get_running_loop()
        deadline, budget = loop.time() + 2.0, 64 * MAX_LINE
        try:
            while budget > 0 and loop.time() < deadline:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
                if not chunk:
                    break
                budget -= len(chunk)
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass

    async def handle_node(self, reader, writer):
        import asyncio

        self._track()
        too_long = {"ok": False, "error": "request line longer than 1 MiB"}
        try:
            while True:
                last = False
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as e:
                    line, last = e.partial, True  # EOF; maybe a final unterminated request
                except asyncio.LimitOverrunError:
                    await self._refuse_and_linger(reader, writer, too_long)
                    break
                if len(line.rstrip(b"\r\n")) > MAX_LINE:
                    await self._refuse_and_linger(reader, writer, too_long)
                    break
                if line.strip():
                    writer.write(self.encode(await self.dispatch(line)))
                    await writer.drain()
                if last:
                    break
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    # -- cockpit ------------------------------------------------------------

    async def handle_http(self, reader, writer):
        import asyncio
        import hmac

        self._track()
        status, body, extra = 400, {"ok": False, "error": "bad request"}, {}
        method = "GET"
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                head = None
            if head is not None:
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split()
                headers = {}
                for h in lines[1:]:
                    if ":" in h:
                        k, v = h.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                length = headers.get("content-length", "0")
                if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                    pass
                elif not length.isdigit() or int(length) > MAX_HTTP_BODY:
                    status, body = 413, {"ok": False, "error": "request body too large"}
                else:
                    if int(length):
                        await reader.readexactly(int(length))
                    method, target = parts[0], parts[1]
                    path = target.split("?", 1)[0]
                    token = self.cfg["auth_token"]
                    supplied = headers.get("authorization", "")
                    if token is not None and not hmac.compare_digest(
                        supplied.encode(), f"Bearer {token}".encode()
                    ):
                        status, body = 401, {"ok": False, "error": "unauthorized"}
                        extra["WWW-Authenticate"] = 'Bearer realm="knarr-cockpit"'
                    elif path not in ("/api/status", "/api/skills"):
                        status, body = 404, {"ok": False, "error": "not found"}
                    elif method not in ("GET", "HEAD"):
                        status, body = 405, {"ok": False, "error": "method not allowed"}
                        extra["Allow"] = "GET, HEAD"
                    elif path == "/api/status":
                        status, body = 200, self.status()
                    else:
                        status, body = 200, self.skills_info()
            reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                      405: "Method Not Allowed", 413: "Payload Too Large"}[status]
            payload = (json.dumps(body) + "\n").encode()
            hdrs = [
                f"HTTP/1.1 {status} {reason}",
                "Content-Type: application/json",
                f"Content-Length: {len(payload)}",
                "Connection: close",
                "Cache-Control: no-store",
            ] + [f"{k}: {v}" for k, v in extra.items()]
            writer.write(("\r\n".join(hdrs) + "\r\n\r\n").encode())
            if method != "HEAD":
                writer.write(payload)
            await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass


async def serve_async(cfg, node):
    import asyncio
    import signal
    import threading

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum, frame):
        # Backstop: whatever a skill handler is doing, be gone within ~0.8 s.
        t = threading.Timer(0.8, os._exit, (EXIT_OK,))
        t.daemon = True
        t.start()
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    servers = []
    try:
        servers.append(
            await asyncio.start_server(
                node.handle_node, cfg["host"], cfg["port"], limit=MAX_LINE + 1, reuse_address=True
            )
        )
        out(f"knarr: node listening on {cfg['host']}:{cfg['port']}")
        if cfg["cockpit_port"]:
            servers.append(
                await asyncio.start_server(
                    node.handle_http, cfg["cockpit_bind"], cfg["cockpit_port"],
                    limit=MAX_HTTP_HEADER, reuse_address=True,
                )
            )
            auth = "bearer token" if cfg["auth_token"] else "no auth"
            out(f"knarr: cockpit listening on {cfg['cockpit_bind']}:{cfg['cockpit_port']} ({auth})")
    except OSError as e:
        for s in servers:
            s.close()
        raise Refuse(EXIT_RUNTIME, f"cannot listen: {e}")

    out("knarr: ready")
    await stop.wait()
    out("knarr: stopping")
    for s in servers:
        s.close()
    for t in list(node.conn_tasks):
        t.cancel()
    if node.conn_tasks:
        await asyncio.wait(list(node.conn_tasks), timeout=0.3)


def cmd_serve(config_path):
    import asyncio

    cfg = load_config(config_path)
    node_id = load_identity(cfg["storage"])
    out(f"knarr: loaded persistent identity {node_id}")
    skills = load_skills(cfg, node_id)
    node = Node(cfg, node_id, skills)
    asyncio.run(serve_async(cfg, node))
    out("knarr: stopped")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: nothing to persist, and a stuck handler
    # thread must not delay the exit.
    os._exit(EXIT_OK)


def cmd_health(config_path):
    import socket

    try:
        cfg = load_config(config_path, warnings=False)
    except Refuse as e:
        print(f"knarr: unhealthy: {e}", file=sys.stderr)
        return EXIT_UNHEALTHY
    host = cfg["host"]
    if host in ("0.0.0.0", "::", "*", "localhost", "127.0.0.1"):
        host = "127.0.0.1"
    try:
        with socket.create_connection((host, cfg["port"]), timeout=2) as s:
            s.sendall(b'{"op":"status"}\n')
            buf = b""
            while not buf.endswith(b"\n") and len(buf) < MAX_LINE:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        resp = json.loads(buf)
    except (OSError, ValueError) as e:
        print(f"knarr: unhealthy: {e}", file=sys.stderr)
        return EXIT_UNHEALTHY
    if isinstance(resp, dict) and resp.get("ok") is True:
        print(f"knarr: healthy {resp.get('node_id')}")
        return EXIT_OK
    print(f"knarr: unhealthy: {resp!r}", file=sys.stderr)
    return EXIT_UNHEALTHY


USAGE = """usage: knarr serve  --config PATH
       knarr health --config PATH
       knarr --version"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in (["--version"], ["version"]):
        print(VERSION)
        return EXIT_OK
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return EXIT_OK if argv else EXIT_CONFIG
    cmd, rest = argv[0], argv[1:]
    config = None
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--config" and i + 1 < len(rest):
            config, i = rest[i + 1], i + 2
        elif a.startswith("--config="):
            config, i = a.split("=", 1)[1], i + 1
        else:
            print(f"knarr: unknown argument {a!r}\n{USAGE}", file=sys.stderr)
            return EXIT_CONFIG
    if config is None:
        print(f"knarr: --config PATH is required\n{USAGE}", file=sys.stderr)
        return EXIT_CONFIG
    if cmd == "health":
        return cmd_health(config)
    if cmd != "serve":
        print(f"knarr: unknown command {cmd!r}\n{USAGE}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        cmd_serve(config)
    except Refuse as e:
        print(f"knarr: refusing to start: {e}", file=sys.stderr, flush=True)
        return e.status
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
