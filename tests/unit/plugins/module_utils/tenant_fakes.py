"""A small hand-written stand-in for the docker-py APIClient calls the tenant engine makes.

Containers live in a dict; ``start`` makes a container run, unless its image or env says otherwise:
an image named ``*:exits`` or env ``TENANT_EXIT_CODE`` exits at once, ``TENANT_UNHEALTHY`` makes a
container with a health check unhealthy. Every mutating call is recorded in ``calls``.
"""

import itertools

from docker.errors import APIError, NotFound

MUTATING = ("create_container", "start", "stop", "rename", "remove_container", "update", "unpause")


class _Response:
    status_code = 200


class FakeAPI:
    def __init__(self, ncpu=2, images=("fenrir-tenant-http:latest", "fenrir-tenant-http:exits"),
                 log_drivers=("json-file", "local", "journald")):
        self.ncpu = ncpu
        self.images = {ref: "sha256:" + ("%02x" % i) * 32 for i, ref in enumerate(images, 1)}
        self.log_drivers = list(log_drivers)
        self.containers_by_id = {}
        self.calls = []
        self.refuse_update = False
        self._ids = itertools.count(1)

    # -- helpers for tests
    def add(self, name, labels=None, state="running", ports=None, image="fenrir-tenant-http:latest", **host):
        """A container made by someone else (or by an earlier run): ports = {"8080/tcp": [("0.0.0.0", 18080)]}."""
        cid = "%064x" % next(self._ids)
        bindings = {k: [{"HostIp": ip, "HostPort": str(p)} for ip, p in v] for k, v in (ports or {}).items()}
        host_config = dict(PortBindings=bindings, NanoCpus=0, Memory=0, MemorySwap=0,
                           RestartPolicy={"Name": "no", "MaximumRetryCount": 0})
        host_config.update(host)
        self.containers_by_id[cid] = dict(
            Id=cid, Name="/" + name, Image=self.images.get(image, "sha256:" + "ee" * 32),
            Config=dict(Image=image, Labels=dict(labels or {}), Env=[], Healthcheck=None),
            HostConfig=host_config, RestartCount=0,
            State=dict(Status=state, Running=state == "running", Restarting=False, Paused=False, OOMKilled=False,
                       ExitCode=0, Error=""))
        return cid

    def by_name(self, name):
        for c in self.containers_by_id.values():
            if c["Name"] == "/" + name:
                return c
        return None

    def names(self):
        return sorted(c["Name"][1:] for c in self.containers_by_id.values())

    def mutations(self):
        return [c for c in self.calls if c[0] in MUTATING]

    def _get(self, ref):
        c = self.containers_by_id.get(ref) or self.by_name(ref)
        if c is None:
            raise NotFound("no such container: %s" % ref)
        return c

    # -- docker-py APIClient
    def containers(self, all=False):  # noqa: A002 (docker-py's name)
        out = []
        for c in self.containers_by_id.values():
            ports = []
            if c["State"]["Running"]:
                for key, binds in (c["HostConfig"]["PortBindings"] or {}).items():
                    port, proto = key.split("/")
                    for b in binds or []:
                        ports.append(dict(IP=b["HostIp"], PrivatePort=int(port), PublicPort=int(b["HostPort"]),
                                          Type=proto))
            out.append(dict(Id=c["Id"], Names=[c["Name"]], Labels=c["Config"]["Labels"], State=c["State"]["Status"],
                            Ports=ports))
        return out

    def info(self):
        return dict(NCPU=self.ncpu, Plugins=dict(Log=self.log_drivers), LoggingDriver="json-file")

    def inspect_container(self, ref):
        import copy
        return copy.deepcopy(self._get(ref))

    def inspect_image(self, ref):
        if ref not in self.images:
            raise NotFound("no such image: %s" % ref)
        return dict(Id=self.images[ref])

    @staticmethod
    def create_host_config(**kw):
        return kw

    def create_container(self, image, name, labels, host_config, environment=None, healthcheck=None, **kw):
        self.calls.append(("create_container", name))
        if self.by_name(name):
            raise APIError("Conflict: the name %s is in use" % name)
        bindings = {k: [{"HostIp": ip, "HostPort": str(p)} for ip, p in v]
                    for k, v in (host_config.get("port_bindings") or {}).items()}
        cid = "%064x" % next(self._ids)
        self.containers_by_id[cid] = dict(
            Id=cid, Name="/" + name, Image=self.images[image],
            Config=dict(Image=image, Labels=dict(labels), Env=["%s=%s" % kv for kv in (environment or {}).items()],
                        Healthcheck=healthcheck, Cmd=kw.get("command")),
            HostConfig=dict(PortBindings=bindings, NanoCpus=host_config["nano_cpus"], Memory=host_config["mem_limit"],
                            MemorySwap=host_config["memswap_limit"], RestartPolicy=host_config["restart_policy"],
                            LogConfig=host_config.get("log_config")),
            RestartCount=0,
            State=dict(Status="created", Running=False, Restarting=False, Paused=False, OOMKilled=False, ExitCode=0,
                       Error=""))
        return {"Id": cid}

    def start(self, ref):
        c = self._get(ref)
        self.calls.append(("start", c["Name"][1:]))
        env = dict(e.split("=", 1) for e in c["Config"]["Env"])
        code = env.get("TENANT_EXIT_CODE") or ("3" if c["Config"]["Image"].endswith(":exits") else None)
        if code:
            c["State"].update(Status="exited", Running=False, ExitCode=int(code))
            return
        c["State"].update(Status="running", Running=True, ExitCode=0)
        if c["Config"].get("Healthcheck"):
            c["State"]["Health"] = {"Status": "unhealthy" if "TENANT_UNHEALTHY" in env else "healthy",
                                    "Log": [{"ExitCode": 1, "Output": "503"}]}

    def stop(self, ref, timeout=10):
        c = self._get(ref)
        self.calls.append(("stop", c["Name"][1:]))
        c["State"].update(Status="exited", Running=False, ExitCode=0)

    def unpause(self, ref):
        c = self._get(ref)
        self.calls.append(("unpause", c["Name"][1:]))
        c["State"].update(Status="running", Running=True, Paused=False)

    def rename(self, ref, name):
        c = self._get(ref)
        self.calls.append(("rename", c["Name"][1:], name))
        if self.by_name(name):
            raise APIError("Conflict: the name %s is in use" % name)
        c["Name"] = "/" + name

    def remove_container(self, ref, force=False):
        c = self._get(ref)
        self.calls.append(("remove_container", c["Name"][1:]))
        del self.containers_by_id[c["Id"]]

    def logs(self, ref, tail=3):
        return b"exiting with code 3\n"

    # docker update, through the raw endpoint as the engine calls it
    def _url(self, path, ref):
        return (path, ref)

    def _post_json(self, url, data):
        path, ref = url
        c = self._get(ref)
        self.calls.append(("update", c["Name"][1:], dict(data)))
        if self.refuse_update and set(data) != {"RestartPolicy"}:
            raise APIError("Cannot update container: memory limit below usage")
        for key in ("NanoCpus", "Memory", "MemorySwap", "RestartPolicy"):
            if key in data:
                c["HostConfig"][key] = data[key]
        return _Response()

    def _raise_for_status(self, response):
        return None


class FakeClient:
    def __init__(self, api=None, **kw):
        self.api = api or FakeAPI(**kw)
