# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tenant spec (seed 001's shape): validated, normalized, converted to Docker's units, masked for output.

No Docker and no Ansible here: every function takes plain data and raises
:class:`~errors.SpecError` (kind ``tenant``) naming the tenant and the field, so the module, the role's
preflight filter and the unit tests share one set of rules.

The normalized spec keeps the seed's shape, with every default filled in::

    tenant_id, provider_type: docker,
    containers: [{name, image, command, args, env, ports: [{container_port, host_port, protocol, name}]}],
    resources: {cpu: <millicores>, memory: <MB>},
    provider_config: {restart_policy, log_driver, log_options, health_check}
"""

from __future__ import annotations

import copy
import hashlib
import json
import re

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError
from ansible_collections.fenrir.fleet.plugins.module_utils.naming import validate_tenant_id, validate_tenant_prefix

DEFAULT_PREFIX = "fenrir"
PROVIDER_TYPE = "docker"
DEFAULT_RESTART_POLICY = "unless-stopped"  # the seed's default
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
PROTOCOLS = ("tcp", "udp", "sctp")
NANOCPUS_PER_MILLICORE = 10 ** 6  # 1000 millicores = 1 CPU = 10^9 NanoCpus
MIB = 1024 ** 2  # the seed's "megabytes"
MIN_CPU_MILLICORES = 10  # Docker's floor: 0.01 CPU
MIN_MEMORY_MB = 6  # Docker's floor for a memory limit
MASK = "********"
# Env keys whose values are secrets: never shown in results, diffs or container labels.
SECRET_ENV_RE = re.compile(r"(token|secret|passw|passphrase|key|credential|auth)", re.I)
# user:password@ in a URL-like value (DATABASE_URL=postgres://app:pw@db/x): the password is masked too.
URL_PASSWORD_RE = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<password>[^@\s/]+)(?P<tail>@)")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
PORT_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
CONTAINER_NAME_RE = PORT_NAME_RE
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

TOP_KEYS = ("tenant_id", "provider_type", "containers", "resources", "provider_config")
CONTAINER_KEYS = ("name", "image", "command", "args", "env", "ports")
PORT_KEYS = ("container_port", "host_port", "protocol", "name")
RESOURCE_KEYS = ("cpu", "memory")
PROVIDER_KEYS = ("restart_policy", "log_driver", "log_options", "health_check")
HEALTH_KEYS = ("test", "interval", "timeout", "retries", "start_period")
HEALTH_DURATIONS = ("interval", "timeout", "start_period")


class _Fields:
    """Raises SpecError for one tenant, naming the field by its path in the spec."""

    def __init__(self, tenant_id):
        self.tenant_id = tenant_id

    def error(self, field, message):
        return SpecError(self.tenant_id, field, message, kind="tenant")

    def mapping(self, value, field, allowed, required=False):
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.error(field, "must be a mapping, got %s" % _kind(value))
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise self.error(field, "unknown key(s) %s; known: %s" % (", ".join(unknown), ", ".join(allowed)))
        return value

    def integer(self, value, field, low, high, hint=""):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(field, "must be an integer %d-%d%s, got %r" % (low, high, hint, value))
        if not low <= value <= high:
            raise self.error(field, "must be %d-%d%s, got %d" % (low, high, hint, value))
        return value

    def string(self, value, field, pattern=None, what=None):
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, "must be a non-empty string, got %r" % (value,))
        if pattern is not None and not pattern.fullmatch(value):
            raise self.error(field, "%r is not %s" % (value, what))
        return value

    def strings(self, value, field):
        """A list of strings (numbers are taken as their text); None stays None."""
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(field, "must be a list of strings (e.g. [\"./start.sh\"]), got %s" % _kind(value))
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise self.error("%s[%d]" % (field, i), "must be a string, got %s" % _kind(item))
            out.append(str(item))
        return out


def _kind(value):
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else repr(value)


# --------------------------------------------------------------------------- validation

def tenant_id_of(raw, prefix=DEFAULT_PREFIX):
    """The tenant id of a spec (or of a bare id), validated."""
    tenant_id = raw.get("tenant_id") if isinstance(raw, dict) else raw
    return validate_tenant_id(tenant_id, prefix)


def normalize_tenant(raw, prefix=DEFAULT_PREFIX):
    """One tenant spec, validated and with every default filled in (see the module docstring)."""
    validate_tenant_prefix(prefix)
    if not isinstance(raw, dict):
        raise SpecError(None, "tenants", "every tenant must be a mapping in the seed's shape (tenant_id, "
                        "provider_type, containers, resources, provider_config), got %s" % _kind(raw), kind="tenant")
    tenant_id = tenant_id_of(raw, prefix)
    f = _Fields(tenant_id)
    f.mapping(raw, "spec", TOP_KEYS)
    provider_type = raw.get("provider_type", PROVIDER_TYPE)
    if provider_type != PROVIDER_TYPE:
        raise f.error("provider_type", "%r is not a provider this collection has; only %r (Docker) is"
                      % (provider_type, PROVIDER_TYPE))
    containers = raw.get("containers")
    if not isinstance(containers, list) or not containers:
        raise f.error("containers", "must be a list of exactly one container, got %s"
                      % ("an empty list" if containers == [] else _kind(containers)))
    if len(containers) != 1:
        raise f.error("containers", "has %d containers: the Docker provider enforces exactly one container per "
                      "tenant (no sidecars)" % len(containers))
    container = _container(f, containers[0])
    return dict(
        tenant_id=tenant_id,
        provider_type=PROVIDER_TYPE,
        containers=[container],
        resources=_resources(f, raw.get("resources")),
        provider_config=_provider_config(f, raw.get("provider_config")),
    )


def _container(f, raw):
    c = f.mapping(raw, "containers[0]", CONTAINER_KEYS, required=True)
    name = f.string(c.get("name"), "containers[0].name", CONTAINER_NAME_RE,
                    "1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit")
    image = f.string(c.get("image"), "containers[0].image")
    if any(ch.isspace() for ch in image):
        raise f.error("containers[0].image", "%r is not an image reference (it has white space)" % image)
    return dict(name=name, image=image,
                command=f.strings(c.get("command"), "containers[0].command"),
                args=f.strings(c.get("args"), "containers[0].args"),
                env=_env(f, c.get("env")),
                ports=_ports(f, c.get("ports")))


def _env(f, raw):
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise f.error("containers[0].env", "must be a mapping of name to value, got %s" % _kind(raw))
    out = {}
    for key, value in raw.items():
        field = "containers[0].env.%s" % key
        if not isinstance(key, str) or not ENV_KEY_RE.fullmatch(key):
            raise f.error("containers[0].env", "%r is not an environment variable name (letters, digits, '_', "
                          "'.', '-'; not starting with a digit)" % (key,))
        if isinstance(value, bool) or value is None:
            raise f.error(field, "must be a string; quote it (%s: \"%s\") so YAML does not turn it into %r"
                          % (key, {True: "true", False: "false", None: ""}[value], value))
        if isinstance(value, (int, float)):
            value = str(value)
        if not isinstance(value, str):
            raise f.error(field, "must be a string, got %s" % _kind(value))
        if "\x00" in value:
            raise f.error(field, "must not contain a NUL character")
        out[key] = value
    return out


def _ports(f, raw):
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise f.error("containers[0].ports", "must be a list, got %s" % _kind(raw))
    ports, inside, published, names = [], {}, {}, {}
    for i, p in enumerate(raw):
        field = "containers[0].ports[%d]" % i
        p = f.mapping(p, field, PORT_KEYS, required=True)
        container_port = f.integer(p.get("container_port"), field + ".container_port", 1, 65535)
        host_port = f.integer(p.get("host_port", 0), field + ".host_port", 0, 65535, " (0 = not published)")
        protocol = p.get("protocol", "tcp")
        if protocol not in PROTOCOLS:
            raise f.error(field + ".protocol", "%r is not one of %s" % (protocol, ", ".join(PROTOCOLS)))
        name = p.get("name")
        if name is not None:
            f.string(name, field + ".name", PORT_NAME_RE, "a port name (a-z, 0-9, '-')")
            if name in names:
                raise f.error(field + ".name", "%r is also the name of ports[%d]" % (name, names[name]))
            names[name] = i
        key = (container_port, protocol)
        if key in inside:
            raise f.error(field + ".container_port", "%d/%s is also ports[%d]" % (container_port, protocol, inside[key]))
        inside[key] = i
        if host_port:
            key = (host_port, protocol)
            if key in published:
                raise f.error(field + ".host_port", "%d/%s is also published by ports[%d]"
                              % (host_port, protocol, published[key]))
            published[key] = i
        ports.append(dict(container_port=container_port, host_port=host_port, protocol=protocol, name=name))
    return ports


def _resources(f, raw):
    r = f.mapping(raw, "resources", RESOURCE_KEYS, required=True)
    for key in RESOURCE_KEYS:
        if r.get(key) is None:
            raise f.error("resources.%s" % key, "is required: every tenant runs with a hard CPU and memory limit "
                          "(cpu in millicores, 1000 = 1 CPU; memory in MB)")
    cpu = r["cpu"]
    if isinstance(cpu, float) and not cpu.is_integer():
        raise f.error("resources.cpu", "is in millicores, an integer (1000 = 1 CPU); %r looks like CPUs: write %d"
                      % (cpu, round(cpu * 1000)))
    if isinstance(cpu, float):
        cpu = int(cpu)
    # The upper bound is the engine's CPU count, checked against the engine before anything changes.
    cpu = f.integer(cpu, "resources.cpu", MIN_CPU_MILLICORES, 10 ** 6, " millicores (1000 = 1 CPU)")
    memory = r["memory"]
    if isinstance(memory, float) and memory.is_integer():
        memory = int(memory)
    memory = f.integer(memory, "resources.memory", MIN_MEMORY_MB, 2 ** 30, " MB (Docker's minimum is 6 MB)")
    return dict(cpu=cpu, memory=memory)


def _provider_config(f, raw):
    pc = f.mapping(raw, "provider_config", PROVIDER_KEYS)
    return dict(restart_policy=_restart_policy(f, pc.get("restart_policy", DEFAULT_RESTART_POLICY)),
                log_driver=_log_driver(f, pc.get("log_driver")),
                log_options=_log_options(f, pc.get("log_options"), pc.get("log_driver")),
                health_check=_health_check(f, pc.get("health_check")))


def _restart_policy(f, value):
    field = "provider_config.restart_policy"
    if value is False:  # YAML 1.1 reads a bare no as false
        value = "no"
    if not isinstance(value, str):
        raise f.error(field, "must be one of %s (or on-failure:N), got %r" % (", ".join(RESTART_POLICIES), value))
    name, _sep, count = value.partition(":")
    if name not in RESTART_POLICIES or (_sep and (name != "on-failure" or not count.isdigit())):
        raise f.error(field, "%r is not a restart policy; one of %s, or on-failure:N (N retries)"
                      % (value, ", ".join(RESTART_POLICIES)))
    return value


def _log_driver(f, value):
    if value is None:
        return None
    # Whether the engine has this driver is checked against the engine, before anything changes.
    return f.string(value, "provider_config.log_driver", re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./:-]*$"),
                    "a log driver name (json-file, local, journald, syslog, ...)")


def _log_options(f, value, driver):
    field = "provider_config.log_options"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise f.error(field, "must be a mapping of option to value (e.g. {max-size: 10m, max-file: \"3\"}), got %s"
                      % _kind(value))
    if value and driver is None:
        raise f.error(field, "given without provider_config.log_driver (the options belong to a driver)")
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise f.error(field, "option names must be strings, got %r" % (key,))
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise f.error("%s.%s" % (field, key), "must be a string (Docker's log options are strings), got %s"
                          % _kind(item))
        out[key] = str(item)
    return out


def parse_duration(value):
    """Seconds from a number of seconds or a string such as 500ms, 5s, 1m30s; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def _health_check(f, raw):
    field = "provider_config.health_check"
    if raw is None:
        return None  # the image's own HEALTHCHECK applies (if it has one)
    hc = f.mapping(raw, field, HEALTH_KEYS, required=True)
    test = hc.get("test")
    if isinstance(test, str) and test.strip():
        test = ["CMD-SHELL", test]
    elif isinstance(test, list) and test and all(isinstance(t, str) and t for t in test):
        if test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            test = ["CMD"] + list(test)
        if test[0] == "NONE" and len(test) > 1:
            raise f.error(field + ".test", "[NONE] (no health check) takes nothing after it")
        if test[0] in ("CMD", "CMD-SHELL") and len(test) < 2:
            raise f.error(field + ".test", "%s needs the command to run" % test[0])
    else:
        raise f.error(field + ".test", "must be a command: a list ([CMD, prog, arg], [CMD-SHELL, \"cmd\"], [NONE]) or "
                      "a shell command string, got %r" % (test,))
    out = dict(test=list(test))
    for key in HEALTH_DURATIONS:
        if hc.get(key) is None:
            out[key] = None  # Docker's default
            continue
        seconds = parse_duration(hc[key])
        if seconds is None or seconds < 0.001:
            raise f.error("%s.%s" % (field, key), "must be a duration of at least 1ms (seconds, or 500ms, 5s, 1m30s), "
                          "got %r" % (hc[key],))
        out[key] = seconds
    out["retries"] = None if hc.get("retries") is None else f.integer(hc["retries"], field + ".retries", 1, 1000)
    if test[0] == "NONE" and any(out[k] is not None for k in HEALTH_DURATIONS + ("retries",)):
        raise f.error(field, "[NONE] turns the health check off; interval, timeout, retries and start_period "
                      "do not apply")
    return out


def normalize_tenants(raws, prefix=DEFAULT_PREFIX, problems=None):
    """Many tenants: each validated, tenant ids unique, no host port published by two of them.

    Raises the first SpecError; with a ``problems`` list, appends every one to it instead (and returns the
    tenants that passed)."""
    def refuse(exc):
        if problems is None:
            raise exc
        problems.append(exc)

    if not isinstance(raws, list):
        refuse(SpecError(None, "tenants", "must be a list of tenant specs, got %s" % _kind(raws), kind="tenant"))
        return []
    specs, seen, ports = [], set(), {}
    for raw in raws:
        try:
            spec = normalize_tenant(raw, prefix)
        except SpecError as exc:
            refuse(exc)
            continue
        tid = spec["tenant_id"]
        if tid in seen:
            refuse(SpecError(tid, "tenant_id", "given twice", kind="tenant"))
            continue
        seen.add(tid)
        clash = False
        for i, p in enumerate(spec["containers"][0]["ports"]):
            key = (p["host_port"], p["protocol"])
            if p["host_port"] and key in ports:
                refuse(SpecError(tid, "containers[0].ports[%d].host_port" % i, "%d/%s is also published by tenant %r"
                                 % (key[0], key[1], ports[key]), kind="tenant"))
                clash = True
        if clash:
            continue
        for p in spec["containers"][0]["ports"]:
            if p["host_port"]:
                ports[(p["host_port"], p["protocol"])] = tid
        specs.append(spec)
    return specs


# --------------------------------------------------------------------------- Docker's units

def nano_cpus(spec):
    """Millicores -> NanoCpus: 500 -> 0.5 CPU -> 500,000,000 (the CFS quota is then 50000 per 100000)."""
    return spec["resources"]["cpu"] * NANOCPUS_PER_MILLICORE


def memory_bytes(spec):
    """MB -> bytes (x 1024^2). The swap limit is the same number: no swap beyond the memory limit."""
    return spec["resources"]["memory"] * MIB


def restart_policy_api(value):
    """'on-failure:3' -> {'Name': 'on-failure', 'MaximumRetryCount': 3}."""
    name, _sep, count = value.partition(":")
    return {"Name": name, "MaximumRetryCount": int(count) if count else 0}


def restart_policy_text(api_value):
    """Docker's RestartPolicy back to the spec's text (an engine may report '' for no)."""
    api_value = api_value or {}
    name = api_value.get("Name") or "no"
    if name == "on-failure" and api_value.get("MaximumRetryCount"):
        return "on-failure:%d" % api_value["MaximumRetryCount"]
    return name


def healthcheck_api(hc):
    """The spec's health check in Docker's form (durations in nanoseconds); None keeps the image's."""
    if hc is None:
        return None
    out = {"Test": list(hc["test"])}
    for key, api_key in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod")):
        if hc.get(key) is not None:
            out[api_key] = int(round(hc[key] * 1e9))
    if hc.get("retries") is not None:
        out["Retries"] = hc["retries"]
    return out


def docker_command(spec):
    """Docker's Cmd: command followed by args (the image's ENTRYPOINT stays, as with Landlord); None = the image's."""
    c = spec["containers"][0]
    if c["command"] is None and c["args"] is None:
        return None
    return (c["command"] or []) + (c["args"] or [])


def port_bindings(spec, bind_address):
    """(exposed ports, bindings): every container port exposed; only host_port > 0 published, on ``bind_address``.

    host_port 0 means no mapping at all (Landlord let Docker pick a random port on every interface)."""
    exposed, bindings = [], {}
    for p in spec["containers"][0]["ports"]:
        key = "%d/%s" % (p["container_port"], p["protocol"])
        exposed.append((p["container_port"], p["protocol"]))
        if p["host_port"]:
            bindings[key] = [(bind_address, p["host_port"])]
    return exposed, bindings


# --------------------------------------------------------------------------- what a change needs, and output

def recreate_view(spec, bind_address):
    """What Docker cannot change in a running container: a difference here means a new container.

    CPU, memory and the restart policy are not in it: Docker updates those in place."""
    c = spec["containers"][0]
    pc = spec["provider_config"]
    return dict(provider_type=spec["provider_type"], name=c["name"], image=c["image"], command=c["command"],
                args=c["args"], env=c["env"], ports=c["ports"], bind_address=bind_address,
                log_driver=pc["log_driver"], log_options=pc["log_options"], health_check=pc["health_check"])


def spec_digest(spec, bind_address):
    """Digest of :func:`recreate_view` (a container label: a new digest means a new container)."""
    data = json.dumps(recreate_view(spec, bind_address), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


def is_secret_env(key):
    return bool(SECRET_ENV_RE.search(key))


def mask_value(key, value):
    """An env value as it may be shown: secret-looking keys masked, passwords inside URLs masked."""
    if is_secret_env(key):
        return MASK
    return URL_PASSWORD_RE.sub(lambda m: m.group("head") + MASK + m.group("tail"), value)


def masked_env(env):
    return {k: mask_value(k, v) for k, v in sorted((env or {}).items())}


def secret_values(specs):
    """Every value a result must never show (for AnsibleModule.no_log_values): secret-looking env values
    and passwords inside URL-like values."""
    found = set()
    for spec in specs or []:
        if not isinstance(spec, dict):
            continue
        for c in spec.get("containers") or []:
            env = c.get("env") if isinstance(c, dict) else None
            if not isinstance(env, dict):
                continue
            for key, value in env.items():
                if not isinstance(value, str) or not value:
                    continue
                if is_secret_env(str(key)):
                    found.add(value)
                found.update(m.group("password") for m in URL_PASSWORD_RE.finditer(value))
    return found


def public_spec(spec, bind_address=None):
    """The spec as it may be shown (results, diffs, the spec label): env values masked."""
    out = copy.deepcopy(spec)
    for c in out["containers"]:
        c["env"] = masked_env(c["env"])
    if bind_address is not None:
        out["bind_address"] = bind_address
    return out
