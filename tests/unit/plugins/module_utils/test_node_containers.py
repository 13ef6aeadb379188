"""node_containers.py and container_files.py: what forces a recreate, how files are compared and shown, the result contract, and
check-mode planning.  No Docker: the Reconciler tests use a small hand-written fake of the few
docker-py APIClient read methods it calls (inspect_image, inspect_container, head, get_archive)."""

import base64
import datetime
import io
import json
import os
import posixpath
import tarfile
from types import SimpleNamespace

import pytest
from docker.errors import APIError, NotFound

from ansible_collections.fenrir.fleet.plugins.module_utils import container_files as cf
from ansible_collections.fenrir.fleet.plugins.module_utils import node_containers as nc
from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_config import CONFIG_DIR
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import normalize_node

SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
NETWORK = "fenrir-fleet"
IMAGE_ID = "sha256:" + "ab" * 32
TOML = CONFIG_DIR + "/knarr.toml"
ECHO = CONFIG_DIR + "/skills/echo.py"


def secret_forms(seed):
    return [seed.hex(), seed.hex().upper(), base64.b64encode(seed).decode(), repr(seed), repr(seed)[2:-1]]


def make_work(label="alpha", ip="172.21.0.10", registry="/srv/fleet/fleet.db", seed=SEED, former=(), **spec_fields):
    spec = normalize_node(dict(label=label, **spec_fields))
    work = nc.NodeWork(spec, ip, seed, registry, NETWORK, former=former)
    work.files = {TOML: (b"[node]\nport = 9010\n", 0o644), ECHO: (b"async def handle(d):\n    return d\n", 0o644)}
    return work


def inspect_of(work, image_id=IMAGE_ID, state="running", labels=None, network=NETWORK, ip=None, user="10001:10001",
               **host):
    """An inspect_container answer for a container made for ``work`` (override what should differ)."""
    host_config = dict(Memory=work.spec["memory_bytes"], PidsLimit=work.spec["pids_limit"],
                       RestartPolicy={"Name": work.spec["restart_policy"], "MaximumRetryCount": 0},
                       PortBindings={}, NanoCpus=work.spec["nano_cpus"], CapDrop=["ALL"], CapAdd=None,
                       SecurityOpt=["no-new-privileges"], Privileged=False,
                       LogConfig={"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}},
                       ReadonlyRootfs=work.spec["read_only"])
    if work.spec["read_only"]:
        host_config.update(Mounts=[{"Type": "volume", "Target": "/opt/knarr"}], Tmpfs={"/tmp": "rw,size=16m"})
    host_config.update(host)
    return {
        "Id": "c0ffee" * 10 + "abcd",
        "Name": "/" + work.name,
        "Image": image_id,
        "Config": {"Image": work.spec["image"], "Labels": dict(work.labels if labels is None else labels),
                   "User": user},
        "HostConfig": host_config,
        "NetworkSettings": {"Networks": {network: {"IPAMConfig": {"IPv4Address": ip or work.ip},
                                                   "IPAddress": ip or work.ip}}},
        "State": {"Status": state},
    }


# --------------------------------------------------------------------------- NodeWork and its result


def test_nodework_labels_name_the_node_registry_and_spec():
    work = make_work(location="eu-north")
    assert work.name == "fenrir-alpha"
    assert work.labels == {
        "fenrir.fleet.role": "knarr-node",
        "fenrir.fleet.label": "alpha",
        "fenrir.fleet.server_id": "fenrir-alpha",
        "fenrir.fleet.registry": "/srv/fleet/fleet.db",
        "fenrir.fleet.spec": nc.container_digest(work.spec, NETWORK),
        "fenrir.fleet.location": "eu-north",
    }
    assert "fenrir.fleet.location" not in make_work().labels
    assert work.node_id == ident.node_id_from_seed(SEED)


def test_result_contract_ok():
    work = make_work()
    work.actions = ["create", "start"]
    work.boot_seconds = 1.23456
    out = work.result()
    assert out["result"] == {"status": "ok", "ip": "172.21.0.10", "server_id": "fenrir-alpha", "provider": "docker"}
    assert out["label"] == "alpha" and out["server_id"] == "fenrir-alpha" and out["ip"] == "172.21.0.10"
    assert out["node_id"] == ident.node_id_from_seed(SEED)
    assert out["changed"] is True and out["failed"] is False
    assert out["boot_seconds"] == 1.235
    assert out["actions"] == ["create", "start"] and out["actions"] is not work.actions


def test_result_contract_dry_run_and_unchanged():
    out = make_work().result(check_mode=True)
    assert out["result"]["status"] == "dry_run"
    assert out["changed"] is False and out["boot_seconds"] is None


def test_result_contract_error_wins_over_dry_run():
    work = make_work()
    work.failed, work.reason = True, "boom"
    for check_mode in (False, True):
        out = work.result(check_mode=check_mode)
        assert out["result"]["status"] == "error"
        assert out["failed"] is True and out["reason"] == "boom"


def test_result_never_holds_the_seed():
    text = json.dumps(make_work().result())
    for form in secret_forms(SEED):
        assert form not in text


# --------------------------------------------------------------------------- comparing containers


def test_container_view_reads_inspect_and_keeps_only_fleet_labels():
    work = make_work()
    info = inspect_of(work, labels=dict(work.labels, **{"com.example.other": "x"}))
    view = nc.container_view(info, NETWORK)
    assert view["name"] == "fenrir-alpha"
    assert view["image"] == "knarr-cluster-node:latest" and view["image_id"] == IMAGE_ID
    assert view["network"] == NETWORK and view["ip"] == "172.21.0.10"
    assert view["memory"] == 256 * 1024 ** 2 and view["pids_limit"] == 50
    assert view["restart_policy"] == "unless-stopped"
    assert view["ports_published"] is False
    assert view["labels"] == work.labels
    assert view["state"] == "running"
    assert nc.container_view(None, NETWORK) is None


def test_container_view_prefers_ipam_address_and_falls_back_to_ipaddress():
    work = make_work()
    info = inspect_of(work)
    info["NetworkSettings"]["Networks"][NETWORK] = {"IPAMConfig": None, "IPAddress": "172.21.0.77"}
    assert nc.container_view(info, NETWORK)["ip"] == "172.21.0.77"
    info["NetworkSettings"]["Networks"][NETWORK] = {"IPAMConfig": {"IPv4Address": "172.21.0.10"},
                                                    "IPAddress": "172.21.0.77"}
    assert nc.container_view(info, NETWORK)["ip"] == "172.21.0.10"


def test_container_not_on_the_fleet_network_is_recreated():
    work = make_work()
    view = nc.container_view(inspect_of(work, network="bridge"), NETWORK)
    assert view["network"] == ["bridge"] and view["ip"] is None
    reasons = nc.recreate_reasons(view, nc.desired_view(work, IMAGE_ID))
    assert any(r.startswith("network ") for r in reasons)
    assert any(r.startswith("ip ") for r in reasons)


def test_identical_container_needs_no_recreate_whatever_its_state():
    work = make_work()
    desired = nc.desired_view(work, IMAGE_ID)
    for state in ("running", "exited", "created"):
        assert nc.recreate_reasons(nc.container_view(inspect_of(work, state=state), NETWORK), desired) == []


@pytest.mark.parametrize("override, key", [
    (dict(image_id="sha256:" + "cd" * 32), "image_id"),
    (dict(ip="172.21.0.11"), "ip"),
    (dict(Memory=128 * 1024 ** 2), "memory"),
    (dict(PidsLimit=100), "pids_limit"),
    (dict(RestartPolicy={"Name": "always"}), "restart_policy"),
    (dict(PortBindings={"9010/tcp": [{"HostPort": "9010"}]}), "ports_published"),
])
def test_each_container_level_difference_is_a_recreate_reason(override, key):
    work = make_work()
    reasons = nc.recreate_reasons(nc.container_view(inspect_of(work, **override), NETWORK),
                                  nc.desired_view(work, IMAGE_ID))
    assert len(reasons) == 1 and reasons[0].startswith(key + " ")


def test_a_changed_setting_also_changes_the_spec_label():
    old, new = make_work(memory="256m"), make_work(memory="512m")
    reasons = nc.recreate_reasons(nc.container_view(inspect_of(old), NETWORK), nc.desired_view(new, IMAGE_ID))
    assert "label fenrir.fleet.spec" in reasons
    assert any(r.startswith("memory ") for r in reasons)


def test_missing_or_different_fleet_label_is_a_recreate_reason_but_extra_labels_are_not():
    work = make_work()
    desired = nc.desired_view(work, IMAGE_ID)
    labels = dict(work.labels)
    del labels["fenrir.fleet.server_id"]
    labels["fenrir.fleet.label"] = "beta"
    labels["fenrir.fleet.extra"] = "kept"
    reasons = nc.recreate_reasons(nc.container_view(inspect_of(work, labels=labels), NETWORK), desired)
    assert sorted(reasons) == ["label fenrir.fleet.label", "label fenrir.fleet.server_id"]


def test_restart_policy_no_reported_as_empty_is_not_a_recreate_reason():
    """Engines before the 2023 normalisation report RestartPolicy.Name '' for a container made without one."""
    work = make_work(restart_policy="no")
    view = nc.container_view(inspect_of(work, RestartPolicy={"Name": "", "MaximumRetryCount": 0}), NETWORK)
    assert nc.recreate_reasons(view, nc.desired_view(work, IMAGE_ID)) == []


def test_same_registry_by_another_path_does_not_force_a_recreate(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "fleet.db").write_bytes(b"")
    os.symlink(str(real), str(tmp_path / "link"))
    made = make_work(registry=str(real / "fleet.db"))
    work = make_work(registry=str(tmp_path / "link" / "fleet.db"))
    view = nc.container_view(inspect_of(made), NETWORK)
    assert nc.foreign_registry(view["labels"], work.registry_path) is None
    assert nc.recreate_reasons(view, nc.desired_view(work, IMAGE_ID)) == []


def test_foreign_registry():
    labels = {"fenrir.fleet.registry": "/srv/a/fleet.db"}
    assert nc.foreign_registry(labels, "/srv/a/fleet.db") is None
    assert nc.foreign_registry(labels, "/srv/b/fleet.db") == "/srv/a/fleet.db"
    assert nc.foreign_registry(labels, None) is None
    assert nc.foreign_registry({}, "/srv/b/fleet.db") is None
    assert nc.foreign_registry(None, "/srv/b/fleet.db") is None


def test_the_registry_this_one_was_copied_from_is_not_foreign():
    labels = {"fenrir.fleet.registry": "/srv/a/fleet.db"}
    moved = "postgresql://fleet@db:5432/fleet"
    assert nc.foreign_registry(labels, moved) == "/srv/a/fleet.db"
    assert nc.foreign_registry(labels, moved, former=("/srv/a/fleet.db",)) is None
    made = make_work(registry="/srv/a/fleet.db")
    work = make_work(registry=moved, former=("/srv/a/fleet.db",))
    view = nc.container_view(inspect_of(made), NETWORK)
    assert nc.recreate_reasons(view, nc.desired_view(work, IMAGE_ID), work.former) == []   # kept, not recreated
    assert nc.recreate_reasons(view, nc.desired_view(work, IMAGE_ID)) == ["label fenrir.fleet.registry"]


def test_foreign_registry_same_file_by_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(str(real), str(tmp_path / "link"))
    labels = {"fenrir.fleet.registry": str(real / "fleet.db")}
    assert nc.foreign_registry(labels, str(tmp_path / "link" / "fleet.db")) is None


# --------------------------------------------------------------------------- identity files


def test_identity_file_builds_its_bytes_once_and_lazily(monkeypatch):
    calls = []
    real = ident.build_node_db
    monkeypatch.setattr(ident, "build_node_db", lambda seed: calls.append(seed) or real(seed))
    f = cf.IdentityFile(SEED)
    assert calls == []
    first = bytes(f)
    assert bytes(f) == first and calls == [SEED]
    assert ident.read_seed(first) == SEED


def test_identity_of():
    assert cf.identity_of(None) is None
    assert cf.identity_of(b"") is None
    assert cf.identity_of(b"not a database at all") is None
    assert cf.identity_of(ident.build_node_db(SEED)) == SEED


def lived_in_db(tmp_path, seed):
    """A node.db holding ``seed`` that its node has since written its own data to."""
    import sqlite3
    path = str(tmp_path / ("node-%s.db" % os.urandom(4).hex()))
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
    conn.execute("INSERT INTO node_identity VALUES (?)", (seed,))
    conn.execute("CREATE TABLE peers (addr TEXT)")
    conn.execute("INSERT INTO peers VALUES ('10.0.0.1:9010')")
    conn.commit()
    conn.close()
    with open(path, "rb") as fh:
        return fh.read()


def test_same_file_compares_node_db_by_identity_not_bytes(tmp_path):
    lived_in = lived_in_db(tmp_path, SEED)
    assert lived_in != ident.build_node_db(SEED)
    want = (cf.IdentityFile(SEED), 0o600)
    assert cf.same_file(nc.NODE_DB_PATH, (lived_in, 0o600), want) is True
    assert cf.same_file(nc.NODE_DB_PATH, (ident.build_node_db(OTHER_SEED), 0o600), want) is False
    assert cf.same_file(nc.NODE_DB_PATH, (b"garbage", 0o600), want) is False
    assert cf.same_file(nc.NODE_DB_PATH, (lived_in, 0o644), want) is False  # mode matters too
    assert cf.same_file(nc.NODE_DB_PATH, None, want) is False
    assert cf.same_file(nc.NODE_DB_PATH, (cf.IdentityFile(SEED), 0o600), want) is True
    assert cf.same_file(nc.NODE_DB_PATH, (cf.IdentityFile(OTHER_SEED), 0o600), want) is False


def test_same_file_plain_files_compare_bytes_and_mode():
    assert cf.same_file(TOML, (b"a", 0o644), (b"a", 0o644)) is True
    assert cf.same_file(TOML, (b"a", 0o644), (b"b", 0o644)) is False
    assert cf.same_file(TOML, (b"a", 0o600), (b"a", 0o644)) is False
    assert cf.same_file(TOML, None, (b"a", 0o644)) is False


def test_file_view_shows_node_db_only_as_its_node_id():
    node_id = ident.node_id_from_seed(SEED)
    shown = [cf.file_view(nc.NODE_DB_PATH, (cf.IdentityFile(SEED), 0o600)),
             cf.file_view(nc.NODE_DB_PATH, (ident.build_node_db(SEED), 0o600))]
    for text in shown:
        assert text == "<knarr identity node_id=%s mode=0600>" % node_id
        for form in secret_forms(SEED):
            assert form not in text
    assert cf.file_view(nc.NODE_DB_PATH, (b"junk", 0o644)) == "<knarr identity node_id=none mode=0644>"


def test_file_view_text_binary_and_absent():
    assert cf.file_view(TOML, (b"port = 1\n", 0o644)) == "port = 1\n"
    binary = b"\xff\xfe\x00"
    import hashlib
    assert cf.file_view("/x.bin", (binary, 0o644)) == "<3 bytes, sha256 %s>" % hashlib.sha256(binary).hexdigest()
    assert cf.file_view(TOML, None) is None


# --------------------------------------------------------------------------- tar, read and stat helpers


def test_content_mtime_is_stable_and_content_derived():
    assert cf.content_mtime(b"abc") == cf.content_mtime(b"abc")
    assert cf.content_mtime(b"abc") != cf.content_mtime(b"abd")
    assert 1500000000 <= cf.content_mtime(os.urandom(64)) < 1600000000


def test_make_tar_has_node_owned_files_no_dirs_modes_and_content_mtimes():
    files = {"/opt/knarr/knarr.toml": (b"a = 1\n", 0o644), "/opt/knarr/node.db": (b"\x00db", 0o600),
             "/opt/knarr/skills/echo.py": (b"print()\n", 0o755)}
    with tarfile.open(fileobj=io.BytesIO(cf.make_tar(files))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        # No directory entries: they would hand /opt/knarr back to root in a non-root node image.
        assert sorted(members) == ["opt/knarr/knarr.toml", "opt/knarr/node.db", "opt/knarr/skills/echo.py"]
        for path, (data, mode) in files.items():
            m = members[path.lstrip("/")]
            assert m.isfile() and m.mode == mode and m.mtime == cf.content_mtime(data)
            assert (m.uid, m.gid) == (10001, 10001)
            assert tar.extractfile(m).read() == data


class ArchiveApi:
    """Fake of the APIClient read calls for files: get_archive and head, over ``files``.

    ``files`` is {absolute path: (bytes, mode, mtime)}; archives are named as the engine names them,
    from the base name of the requested path.  ``put_archive`` extracts a tar as the engine would."""

    def __init__(self, files=None, stat_mtime_format="%Y-%m-%dT%H:%M:%SZ"):
        self.archived = 0  # bytes of archives handed out
        self.files = dict(files or {})
        self.calls = []
        self.fmt = stat_mtime_format

    def get_archive(self, container, path):
        self.calls.append(("get_archive", path))
        path = path.rstrip("/") or "/"
        inside = {p: f for p, f in self.files.items() if p == path or p.startswith(path.rstrip("/") + "/")}
        if not inside:
            raise NotFound("no such path %s" % path)
        base = posixpath.dirname(path)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for p, (data, mode, mtime) in sorted(inside.items()):
                info = tarfile.TarInfo(posixpath.relpath(p, base) if base != "/" else p.lstrip("/"))
                info.size, info.mode, info.mtime = len(data), mode, mtime
                tar.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        stat = {}
        if path in self.files:  # the engine's X-Docker-Container-Path-Stat for the path itself
            stat = dict(name=posixpath.basename(path), size=len(self.files[path][0]), mode=self.files[path][1])
        elif inside:
            stat = dict(name=posixpath.basename(path), size=4096, mode=0x80000000 | 0o755)  # a directory
        self.archived += len(raw)
        return iter([raw[i:i + 65536] for i in range(0, len(raw), 65536)] or [b""]), stat

    def put_archive(self, container, path, data):
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                if m.isfile():
                    self.files[posixpath.join(path, m.name)] = (tar.extractfile(m).read(), m.mode, m.mtime)

    def _url(self, fmt, *args):
        return fmt.format(*args)

    def head(self, url, params=None):
        self.calls.append(("head", params["path"]))
        found = self.files.get(params["path"])
        if found is None:
            return SimpleNamespace(status_code=404, headers={})
        data, mode, mtime = found
        stamp = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime(self.fmt)
        stat = dict(name=posixpath.basename(params["path"]), size=len(data), mode=mode, mtime=stamp, linkTarget="")
        return SimpleNamespace(status_code=200,
                               headers={"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(stat).encode())})

    def _raise_for_status(self, response):
        if response.status_code >= 400:
            raise APIError("HTTP %d" % response.status_code)


def test_written_files_pass_the_quick_check_and_read_back():
    files = {"/opt/knarr/knarr.toml": (b"a = 1\n", 0o644), "/opt/knarr/skills/echo.py": (b"x\n", 0o640)}
    api = ArchiveApi()
    api.put_archive("c", "/", cf.make_tar(files))
    for path, want in files.items():
        assert cf.stat_file(api, "c", path) == (len(want[0]), want[1], cf.content_mtime(want[0]))
        assert cf.quick_same(cf.stat_file(api, "c", path), want) is True
        assert cf.read_file(api, "c", path) == want
    assert cf.quick_same(cf.stat_file(api, "c", "/opt/knarr/knarr.toml"), (b"a = 2\n", 0o644)) is False
    assert cf.quick_same(cf.stat_file(api, "c", "/opt/knarr/knarr.toml"), (b"a = 1\n", 0o600)) is False
    assert cf.read_files(api, "c", list(files)) == files


def test_quick_same_accepts_identity_files():
    want = (cf.IdentityFile(SEED), 0o600)
    data = bytes(want[0])
    assert cf.quick_same((len(data), 0o600, cf.content_mtime(data)), want) is True
    assert cf.quick_same((len(data), 0o600, cf.content_mtime(data) + 1), want) is False
    assert cf.quick_same(None, want) is False


def test_read_files_one_archive_per_file_never_the_directory():
    api = ArchiveApi({"/opt/knarr/knarr.toml": (b"t", 0o644, 0), "/opt/knarr/skills/echo.py": (b"e", 0o755, 0),
                      "/opt/knarr/node.db": (b"d", 0o600, 0), "/opt/knarr/big.bin": (b"x" * 4000000, 0o600, 0)})
    got = cf.read_files(api, "c", ["/opt/knarr/knarr.toml", "/opt/knarr/skills/echo.py", "/opt/knarr/missing"])
    assert got == {"/opt/knarr/knarr.toml": (b"t", 0o644), "/opt/knarr/skills/echo.py": (b"e", 0o755),
                   "/opt/knarr/missing": None}
    assert api.calls == [("get_archive", "/opt/knarr/knarr.toml"), ("get_archive", "/opt/knarr/skills/echo.py"),
                         ("get_archive", "/opt/knarr/missing")]
    assert api.archived < 64 * 1024  # the 4 MB file beside them was never archived
    assert cf.read_files(api, "c", ["/etc/none/a", "/etc/none/b"]) == {"/etc/none/a": None, "/etc/none/b": None}


def test_read_file_refuses_a_file_above_its_cap_from_the_engines_stat():
    api = ArchiveApi({"/opt/knarr/knarr.toml": (b"x" * (cf.MAX_FILE_BYTES + 1), 0o644, 0),
                      "/opt/knarr/node.db": (b"d" * (cf.MAX_FILE_BYTES + 1), 0o600, 0)})
    with pytest.raises(cf.ContainerFileError, match=r"knarr.toml in container c is 1048577 bytes, more than the 1048576"):
        cf.read_file(api, "c", "/opt/knarr/knarr.toml")
    assert cf.read_file(api, "c", "/opt/knarr/node.db")[0] == b"d" * (cf.MAX_FILE_BYTES + 1)  # node.db: larger cap
    with pytest.raises(cf.ContainerFileError, match="more than the 1000"):
        cf.read_file(api, "c", "/opt/knarr/node.db", max_size=1000)


def test_read_file_stops_reading_a_stream_that_outgrows_its_cap():
    """An engine whose stat says nothing (or too little): the archive is abandoned once past the cap."""
    api = ArchiveApi({"/opt/knarr/node.db": (b"d" * 3000000, 0o600, 0)})
    real = api.get_archive
    consumed = []

    def lying(container, path):
        stream, dummy = real(container, path)

        def counted():
            for chunk in stream:
                consumed.append(len(chunk))
                yield chunk
        return counted(), {"size": 10, "mode": 0o600}
    api.get_archive = lying
    with pytest.raises(cf.ContainerFileError, match="more than the 100000 bytes"):
        cf.read_file(api, "c", "/opt/knarr/node.db", max_size=100000)
    assert sum(consumed) <= 100000 + cf.TAR_SLACK + 65536


def test_read_file_refuses_links_and_directories():
    api = ArchiveApi({"/opt/knarr/skills/echo.py": (b"e", 0o644, 0)})
    with pytest.raises(cf.ContainerFileError, match="not a regular file"):
        cf.read_file(api, "c", "/opt/knarr/skills")

    class LinkApi(ArchiveApi):
        def get_archive(self, container, path):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                info = tarfile.TarInfo("node.db")
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
                tar.addfile(info)
            return iter([buf.getvalue()]), {"size": 11, "mode": 0o777}
    with pytest.raises(cf.ContainerFileError, match="link to /etc/shadow"):
        cf.read_file(LinkApi(), "c", "/opt/knarr/node.db")


def test_read_file_absent_is_none():
    assert cf.read_file(ArchiveApi(), "c", "/opt/knarr/node.db") is None


def stat_api(stat, status_code=200):
    header = base64.b64encode(json.dumps(stat).encode())
    return SimpleNamespace(
        _url=lambda fmt, *a: fmt.format(*a),
        head=lambda url, params=None: SimpleNamespace(status_code=status_code,
                                                      headers={"X-Docker-Container-Path-Stat": header}),
        _raise_for_status=ArchiveApi._raise_for_status.__get__(object()),
    )


def test_stat_file_parses_size_mode_and_mtime():
    stat = dict(name="knarr.toml", size=12, mode=0o644, mtime="2017-07-14T02:40:00.123456789Z")
    assert cf.stat_file(stat_api(stat), "c", "/opt/knarr/knarr.toml") == (12, 0o644, 1500000000)


def test_stat_file_directory_or_symlink_is_not_a_file():
    for type_bit in (1 << 31, 1 << 27):  # Go os.ModeDir, os.ModeSymlink
        stat = dict(name="x", size=4096, mode=type_bit | 0o755, mtime="2017-07-14T02:40:00Z")
        assert cf.stat_file(stat_api(stat), "c", "/opt/knarr/x") == ("not a file", 0, None)
        assert cf.quick_same(cf.stat_file(stat_api(stat), "c", "/opt/knarr/x"), (b"", 0o755)) is False


def test_stat_file_absent_and_errors():
    assert cf.stat_file(stat_api({}, status_code=404), "c", "/nope") is None
    with pytest.raises(APIError):
        cf.stat_file(stat_api({}, status_code=500), "c", "/nope")


def test_stat_file_honours_the_utc_offset():
    stat = dict(name="knarr.toml", size=12, mode=0o644, mtime="2017-07-14T04:40:00+02:00")
    assert cf.stat_file(stat_api(stat), "c", "/opt/knarr/knarr.toml") == (12, 0o644, 1500000000)


# --------------------------------------------------------------------------- check-mode planning


class ReadOnlyApi(ArchiveApi):
    """The read side of the engine for one node; any write method is absent, so calling one fails the node."""

    def __init__(self, info=None, files=None, images=None, networks=(NETWORK,)):
        super().__init__(files)
        self.info = info
        self.images = {"knarr-cluster-node:latest": IMAGE_ID} if images is None else images
        self.networks = set(networks)

    def inspect_image(self, image):
        self.calls.append(("inspect_image", image))
        if image not in self.images:
            raise NotFound("no such image")
        return {"Id": self.images[image]}

    def inspect_container(self, name):
        self.calls.append(("inspect_container", name))
        if self.info is None:
            raise NotFound("no such container")
        return self.info

    def inspect_network(self, name):
        if name not in self.networks:
            raise NotFound("no such network")
        return {"Name": name}


def as_written(work, seed=None, overrides=None):
    """The container's files as a previous run wrote them (content-derived mtimes)."""
    out = {}
    files = dict(work.files, **{nc.NODE_DB_PATH: (ident.build_node_db(seed or work.seed), 0o600)})
    files.update(overrides or {})
    for path, (data, mode) in files.items():
        out[path] = (data, mode, cf.content_mtime(data))
    return out


def plan(api, work):
    rec = nc.Reconciler(SimpleNamespace(api=api), check_mode=True)
    rec.run([work])
    writes = [c for c in api.calls if c[0] not in ("inspect_image", "inspect_container", "head", "get_archive")]
    assert writes == []
    return rec


def test_plan_for_a_missing_container():
    work = make_work()
    rec = plan(ReadOnlyApi(), work)
    assert not work.failed, work.reason
    assert work.actions == ["create", "put echo.py, knarr.toml, node.db", "start"]
    assert work.container_id is None and work.state is None
    assert work.result(check_mode=True)["result"]["status"] == "dry_run"
    before, after = rec.diff_views(work)
    assert before["container"] is None
    assert "image_id" not in after["container"] and after["container"]["name"] == "fenrir-alpha"
    assert after["files"][nc.NODE_DB_PATH] == "<knarr identity node_id=%s mode=0600>" % work.node_id
    assert before["files"] == {p: None for p in after["files"]}
    for form in secret_forms(SEED):
        assert form not in json.dumps([before, after])


def test_plan_for_an_up_to_date_node_is_empty_and_reads_no_archive():
    work = make_work()
    api = ReadOnlyApi(inspect_of(work), as_written(work))
    plan(api, work)
    assert not work.failed, work.reason
    assert work.actions == [] and not work.changed
    assert work.state == "running" and work.container_id == inspect_of(work)["Id"]
    assert not [c for c in api.calls if c[0] == "get_archive"]


def test_plan_restarts_for_a_changed_file_only():
    work = make_work()
    api = ReadOnlyApi(inspect_of(work), as_written(work, overrides={TOML: (b"[node]\nport = 1\n", 0o644)}))
    rec = plan(api, work)
    assert work.actions == ["put knarr.toml", "restart"]
    assert [c for c in api.calls if c[0] == "get_archive"] == [("get_archive", TOML)]  # only the file that changed
    before, after = rec.diff_views(work)
    assert before["files"][TOML] == "[node]\nport = 1\n" and after["files"][TOML] == "[node]\nport = 9010\n"
    assert before["files"][nc.NODE_DB_PATH] == after["files"][nc.NODE_DB_PATH]


def test_plan_keeps_a_node_db_the_node_has_written_to(tmp_path):
    work = make_work()
    files = as_written(work, overrides={nc.NODE_DB_PATH: (lived_in_db(tmp_path, SEED), 0o600)})
    files[nc.NODE_DB_PATH] = files[nc.NODE_DB_PATH][:2] + (1234,)  # the node touched its database since
    api = ReadOnlyApi(inspect_of(work), files)
    plan(api, work)
    assert not work.failed, work.reason
    assert work.actions == []
    assert ("get_archive", nc.NODE_DB_PATH) in api.calls  # the quick check failed; compared by identity


def test_plan_recreates_a_container_whose_node_db_holds_another_identity():
    """Not a put into the old container: knarr keeps the cert.pem/key.pem it made for the other identity."""
    work = make_work()
    rec = plan(ReadOnlyApi(inspect_of(work), as_written(work, seed=OTHER_SEED)), work)
    assert work.actions == ["recreate (node.db holds node %s, the registry's is %s)"
                            % (ident.node_id_from_seed(OTHER_SEED), work.node_id),
                            "put echo.py, knarr.toml, node.db", "start"]
    dummy, after = rec.diff_views(work)
    assert work.node_id in after["files"][nc.NODE_DB_PATH]


def test_plan_recreates_a_container_without_node_db_but_with_a_certificate():
    work = make_work()
    files = as_written(work)
    del files[nc.NODE_DB_PATH]
    files["/opt/knarr/cert.pem"] = (b"-----BEGIN CERTIFICATE-----", 0o644, 0)
    plan(ReadOnlyApi(inspect_of(work), files), work)
    assert work.actions[0] == "recreate (no node.db but cert.pem of an earlier identity)"
    # Without a certificate (a container made, never started): the files are put, no new container.
    work = make_work()
    files = as_written(work)
    del files[nc.NODE_DB_PATH]
    plan(ReadOnlyApi(inspect_of(work, state="created"), files), work)
    assert work.actions == ["put node.db", "start"]


def test_plan_puts_node_db_again_for_its_mode_only():
    work = make_work()
    files = as_written(work)
    files[nc.NODE_DB_PATH] = (files[nc.NODE_DB_PATH][0], 0o644, files[nc.NODE_DB_PATH][2])
    plan(ReadOnlyApi(inspect_of(work), files), work)
    assert work.actions == ["put node.db", "restart"]


def test_plan_starts_a_stopped_container():
    work = make_work()
    plan(ReadOnlyApi(inspect_of(work, state="exited"), as_written(work)), work)
    assert work.actions == ["start"]
    assert work.state is None


def test_plan_recreates_on_a_container_level_difference():
    work = make_work()
    api = ReadOnlyApi(inspect_of(work, PidsLimit=10), as_written(work))
    plan(api, work)
    assert work.actions[0].startswith("recreate (pids_limit 10 -> 50")
    assert work.actions[1:] == ["put echo.py, knarr.toml, node.db", "start"]
    assert work.container_id is None
    assert not [c for c in api.calls if c[0] in ("head", "get_archive")]  # a new container: nothing to read


def test_plan_refuses_a_container_of_another_node():
    work = make_work()
    other = make_work(label="beta")
    info = inspect_of(work, labels=dict(other.labels))
    plan(ReadOnlyApi(info), work)
    assert work.failed and "belongs to node 'beta'" in work.reason
    assert work.actions == []


def test_plan_refuses_a_container_of_another_registry():
    work = make_work()
    info = inspect_of(work, labels=dict(work.labels, **{"fenrir.fleet.registry": "/other/fleet.db"}))
    plan(ReadOnlyApi(info), work)
    assert work.failed and "/other/fleet.db" in work.reason and "refusing" in work.reason
    assert work.result(check_mode=True)["result"]["status"] == "error"


def test_preflight_names_the_field_and_node():
    work = make_work()
    rec = nc.Reconciler(SimpleNamespace(api=ReadOnlyApi(images={}, networks=())), check_mode=True)
    problems = rec.preflight([work])
    assert [(label, field) for label, field, dummy in problems] == [("alpha", "image"), ("alpha", "network")]
    assert "knarr-cluster-node:latest" in problems[0][2] and NETWORK in problems[1][2]
    assert rec.preflight([work], networks_planned=(NETWORK,))[1:] == []


# --------------------------------------------------------------------------- decommission


class RemovalApi:
    def __init__(self, listed, existing, fail=()):
        self.listed, self.existing, self.fail = listed, set(existing), set(fail)
        self.removed = []

    def containers(self, all=False, filters=None):
        assert all and filters is None  # one listing of every container, labelled or not
        return [{"Names": ["/" + n], "Labels": self.listed.get(n)} for n in sorted(self.existing)]

    def inspect_container(self, name):
        if name not in self.existing:
            raise NotFound("no such container")
        return {"Id": name}

    def remove_container(self, name, force=False, v=False):
        assert force and v  # running or not, with its anonymous volume (read_only nodes)
        if name in self.fail:
            raise APIError("removal in progress", explanation="removal of container %s is in progress" % name)
        if name not in self.existing:
            raise NotFound("no such container")
        self.removed.append(name)


def test_remove_containers_outcomes():
    ours = {"fenrir.fleet.registry": "/srv/fleet/fleet.db"}
    api = RemovalApi({"fenrir-a": ours, "fenrir-x": {"fenrir.fleet.registry": "/elsewhere/fleet.db"},
                      "fenrir-f": ours},
                     existing={"fenrir-a", "fenrir-x", "fenrir-f", "fenrir-hand"}, fail={"fenrir-f"})
    out = nc.remove_containers(SimpleNamespace(api=api), ["fenrir-a", "fenrir-x", "fenrir-hand", "fenrir-gone",
                                                          "fenrir-f"], registry_path="/srv/fleet/fleet.db")
    assert out["fenrir-a"] == "removed" and out["fenrir-hand"] == "removed" and out["fenrir-gone"] == "absent"
    assert out["fenrir-x"].startswith("error:") and "/elsewhere/fleet.db" in out["fenrir-x"]
    assert out["fenrir-f"] == "error: removal of container fenrir-f is in progress"
    assert sorted(api.removed) == ["fenrir-a", "fenrir-hand"]


def test_remove_containers_check_mode_changes_nothing():
    api = RemovalApi({"fenrir-a": {}}, existing={"fenrir-a", "fenrir-hand"})
    out = nc.remove_containers(SimpleNamespace(api=api), ["fenrir-a", "fenrir-hand", "fenrir-gone"], check_mode=True)
    assert out == {"fenrir-a": "removed", "fenrir-hand": "removed", "fenrir-gone": "absent"}
    assert api.removed == []


# --------------------------------------------------------------------------- least privilege


HARDENED_AWAY = [
    (dict(CapDrop=None), "cap_drop"),
    (dict(CapAdd=["NET_ADMIN"]), "cap_add"),
    (dict(SecurityOpt=None), "security_opt"),
    (dict(SecurityOpt=["no-new-privileges", "seccomp=unconfined"]), "security_opt"),
    (dict(Privileged=True), "privileged"),
    (dict(LogConfig={"Type": "json-file", "Config": {}}), "log"),
    (dict(LogConfig={"Type": "json-file", "Config": {"max-size": "1g", "max-file": "3"}}), "log"),
    (dict(NanoCpus=500000000), "nano_cpus"),
    (dict(ReadonlyRootfs=True), "read_only"),
    (dict(Binds=["/etc:/host-etc"]), "mounts"),
]


@pytest.mark.parametrize("override, key", HARDENED_AWAY)
def test_a_container_without_the_hardening_is_recreated(override, key):
    work = make_work()
    reasons = nc.recreate_reasons(nc.container_view(inspect_of(work, **override), NETWORK),
                                  nc.desired_view(work, IMAGE_ID))
    assert len(reasons) == 1 and reasons[0].startswith(key + " "), reasons


def test_a_container_running_as_the_images_user_or_root_is_recreated():
    work = make_work()
    for user in ("", "root", "0:0"):
        reasons = nc.recreate_reasons(nc.container_view(inspect_of(work, user=user), NETWORK),
                                      nc.desired_view(work, IMAGE_ID))
        assert reasons == ["user %s -> 10001:10001" % user]


def test_no_new_privileges_true_is_the_same_option():
    work = make_work()
    view = nc.container_view(inspect_of(work, SecurityOpt=["no-new-privileges:true"]), NETWORK)
    assert nc.recreate_reasons(view, nc.desired_view(work, IMAGE_ID)) == []


def test_a_container_of_the_previous_version_is_recreated_for_every_missing_flag():
    """What containers made before the hardening look like: no flags, the digest of the settings of then."""
    work = make_work()
    import hashlib
    old_digest = hashlib.sha256(json.dumps(dict(image=work.spec["image"], memory_bytes=work.spec["memory_bytes"],
                                                pids_limit=50, restart_policy="unless-stopped", network=NETWORK),
                                           sort_keys=True).encode()).hexdigest()[:16]
    info = inspect_of(work, user="", labels=dict(work.labels, **{"fenrir.fleet.spec": old_digest}), CapDrop=None,
                      SecurityOpt=None, LogConfig={"Type": "json-file", "Config": {}}, NanoCpus=0)
    reasons = nc.recreate_reasons(nc.container_view(info, NETWORK), nc.desired_view(work, IMAGE_ID))
    assert [r.split(" ")[0] for r in reasons] == ["user", "cap_drop", "security_opt", "log", "label"]
    assert "cap_drop [] -> [ALL]" in reasons and "label fenrir.fleet.spec" in reasons


def test_read_only_and_cpus_are_container_settings_in_the_digest():
    base = make_work()
    for changed in (make_work(read_only=True), make_work(cpus=0.5)):
        assert changed.labels["fenrir.fleet.spec"] != base.labels["fenrir.fleet.spec"]
    ro = make_work(read_only=True)
    desired = nc.desired_view(ro, IMAGE_ID)
    assert desired["read_only"] is True and desired["mounts"] == [("tmpfs", "/tmp"), ("volume", "/opt/knarr")]
    assert nc.recreate_reasons(nc.container_view(inspect_of(ro), NETWORK), desired) == []
    assert make_work(cpus=1.5).spec["nano_cpus"] == 1500000000 and base.spec["nano_cpus"] == 0


@pytest.mark.parametrize("cpus", [0, 0.001, -1, "two"])
def test_cpus_refused(cpus):
    with pytest.raises(Exception) as err:
        make_work(cpus=cpus)
    assert "cpus" in str(err.value)


class EngineApi(ReadOnlyApi):
    """ReadOnlyApi plus the write calls the Reconciler makes, recording them (no boot wait: wait=False)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.created = None

    def create_host_config(self, **kw):
        return dict(kw)

    def create_networking_config(self, cfg):
        return cfg

    def create_endpoint_config(self, **kw):
        return kw

    def create_container(self, **kw):
        self.calls.append(("create_container", kw["name"]))
        self.created = kw
        self.files = {}  # a new container: the image's files only (none here)
        self.info = dict(Id="new" * 21 + "x", State={"Status": "created"})
        return {"Id": self.info["Id"]}

    def put_archive(self, container, path, data):
        self.calls.append(("put_archive", path))
        super().put_archive(container, path, data)

    def remove_container(self, name, force=False, v=False):
        self.calls.append(("remove_container", name, force, v))

    def stop(self, name, timeout=None):
        self.calls.append(("stop", name))

    def start(self, name):
        self.calls.append(("start", name))

    def restart(self, name, timeout=None):
        self.calls.append(("restart", name))


def reconcile(api, work):
    rec = nc.Reconciler(SimpleNamespace(api=api), wait=False)
    rec.run([work])
    assert not work.failed, work.reason
    return rec


def test_new_containers_get_no_capability_no_new_privileges_the_node_user_and_bounded_logs():
    work = make_work(cpus=0.5)
    api = EngineApi()
    reconcile(api, work)
    made, host = api.created, api.created["host_config"]
    assert made["user"] == "10001:10001"
    assert host["cap_drop"] == ["ALL"] and "cap_add" not in host and not host.get("privileged")
    assert host["security_opt"] == ["no-new-privileges"]
    assert host["log_config"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert host["nano_cpus"] == 500000000 and "read_only" not in host
    assert ("put_archive", "/opt/knarr") in api.calls  # into the node's directory, never '/'
    assert set(api.files) == {TOML, ECHO, nc.NODE_DB_PATH}


def test_read_only_nodes_get_their_directory_as_a_volume_and_a_tmpfs():
    work = make_work(read_only=True)
    api = EngineApi()
    reconcile(api, work)
    host = api.created["host_config"]
    assert host["read_only"] is True
    assert host["mounts"] == [{"Type": "volume", "Target": "/opt/knarr"}] and set(host["tmpfs"]) == {"/tmp"}
    assert [c for c in api.calls if c[0] == "put_archive"] == [("put_archive", "/opt/knarr")]


def test_an_old_container_is_recreated_keeping_its_node_db_and_its_volume_removed(tmp_path):
    work = make_work()
    lived_in = lived_in_db(tmp_path, SEED)
    files = as_written(work, overrides={nc.NODE_DB_PATH: (lived_in, 0o600)})
    api = EngineApi(inspect_of(work, user="", CapDrop=None, SecurityOpt=None), files)
    reconcile(api, work)
    assert work.actions[:2] == ["keep node.db", "remove (user  -> 10001:10001; cap_drop [] -> [ALL]; "
                                                "security_opt [] -> [no-new-privileges])"]
    assert ("stop", work.name) in api.calls and ("remove_container", work.name, True, True) in api.calls
    assert api.files[nc.NODE_DB_PATH][0] == lived_in  # the node's own database, not a fresh identity


def test_an_identity_replaced_behind_the_registrys_back_gets_a_new_container_and_none_of_the_old_data(tmp_path):
    work = make_work()
    files = as_written(work, seed=OTHER_SEED)
    files["/opt/knarr/cert.pem"] = (b"cert of the other identity", 0o644, 0)
    api = EngineApi(inspect_of(work), files)
    reconcile(api, work)
    assert work.actions[0].startswith("remove (node.db holds node %s" % ident.node_id_from_seed(OTHER_SEED))
    assert ("stop", work.name) not in api.calls  # nothing of the other identity is carried over
    assert "/opt/knarr/cert.pem" not in api.files
    assert cf.identity_of(api.files[nc.NODE_DB_PATH][0]) == SEED


def test_a_node_db_too_large_to_carry_is_refused_before_the_node_is_stopped():
    work = make_work()
    files = as_written(work)
    files[nc.NODE_DB_PATH] = (b"x" * 10, 0o600, 0)
    api = EngineApi(inspect_of(work, CapDrop=None), files)
    real_head = api.head

    def head(url, params=None):
        response = real_head(url, params)
        if params["path"] == nc.NODE_DB_PATH:
            stat = json.loads(base64.b64decode(response.headers["X-Docker-Container-Path-Stat"]))
            stat["size"] = cf.MAX_NODE_DB_BYTES + 1
            response.headers["X-Docker-Container-Path-Stat"] = base64.b64encode(json.dumps(stat).encode())
        return response
    api.head = head
    rec = nc.Reconciler(SimpleNamespace(api=api), wait=False)
    rec.run([work])
    assert work.failed and "more than the %d the collection reads" % cf.MAX_NODE_DB_BYTES in work.reason
    assert not [c for c in api.calls if c[0] in ("stop", "remove_container", "create_container")]


# --------------------------------------------------------------------------- rolling upgrades (rolling_upgrade.py)

class NamedApi:
    """Containers by name (inspect answers), recording rename/stop/start/remove; for the upgrade paths that only move
    containers around."""

    def __init__(self, containers, images=None):
        self.containers = dict(containers)
        self.images = images or {"knarr-cluster-node:latest": IMAGE_ID}
        self.calls = []

    def inspect_image(self, image):
        if image not in self.images:
            raise NotFound("no such image")
        return {"Id": self.images[image]}

    def inspect_container(self, name):
        if name not in self.containers:
            raise NotFound("no such container")
        return self.containers[name]

    def rename(self, name, new):
        self.calls.append(("rename", name, new))
        info = self.containers.pop(name)
        self.containers[new] = dict(info, Name="/" + new)

    def remove_container(self, name, force=False, v=False):
        self.calls.append(("remove_container", name))
        if name not in self.containers:
            raise NotFound("no such container")
        del self.containers[name]

    def start(self, name):
        self.calls.append(("start", name))
        self.containers[name] = dict(self.containers[name], State={"Status": "running"})

    def stop(self, name, timeout=None):
        self.calls.append(("stop", name))


def test_plan_recreate_names_the_image_a_node_runs_and_the_one_it_gets():
    work = make_work()
    old_id = "sha256:" + "0f" * 32
    api = NamedApi({work.name: inspect_of(work, image_id=old_id)})
    rec = nc.Reconciler(SimpleNamespace(api=api))
    assert rec.prepare([work]) == [work]
    assert work.upgrade["from_image_id"] == old_id and work.upgrade["to_image_id"] == IMAGE_ID
    assert work.upgrade["reasons"] == ["image_id %s -> %s" % (old_id, IMAGE_ID)]
    assert work.running_image == ("knarr-cluster-node:latest", old_id)  # what a node held back keeps running
    tagged = make_work(label="tagged", image="knarr-cluster-node:second-tag")  # the same image id, another name
    made = inspect_of(tagged, labels=make_work(label="tagged").labels)  # made for knarr-cluster-node:latest
    made["Config"] = dict(made["Config"], Image="knarr-cluster-node:latest")
    api = NamedApi({tagged.name: made}, images={"knarr-cluster-node:second-tag": IMAGE_ID})
    assert nc.Reconciler(SimpleNamespace(api=api)).prepare([tagged]) == [tagged]
    assert tagged.upgrade["reasons"] == ["image knarr-cluster-node:latest -> knarr-cluster-node:second-tag",
                                         "label fenrir.fleet.spec"]
    same, new = make_work(label="same"), make_work(label="new")
    api = NamedApi({same.name: inspect_of(same)})
    assert nc.Reconciler(SimpleNamespace(api=api)).prepare([same, new]) == []  # unchanged and new: no batch
    assert api.calls == []


def test_a_container_kept_aside_by_a_killed_run_gets_its_name_back_and_a_half_made_successor_goes():
    work = make_work()
    kept = dict(inspect_of(work, state="exited"), Name="/" + nc.previous_name(work.name), Id="old")
    half = dict(inspect_of(work, state="created"), Id="half")
    api = NamedApi({nc.previous_name(work.name): kept, work.name: half})
    nc.Reconciler(SimpleNamespace(api=api))._recover_interrupted(work)
    assert api.calls == [("remove_container", work.name), ("rename", nc.previous_name(work.name), work.name)]
    assert api.containers[work.name]["Id"] == "old" and not work.failed
    assert work.actions == ["restore %s kept by an interrupted run" % nc.previous_name(work.name)]


def test_a_kept_container_of_another_registry_is_left_alone():
    work = make_work()
    labels = dict(work.labels, **{nc.LABEL_PREFIX + "registry": "/elsewhere/fleet.db"})
    kept = dict(inspect_of(work, labels=labels), Name="/" + nc.previous_name(work.name))
    api = NamedApi({nc.previous_name(work.name): kept})
    nc.Reconciler(SimpleNamespace(api=api))._recover_interrupted(work)
    assert api.calls == [] and work.actions == []


def test_a_failed_batch_node_gets_its_previous_container_back():
    work = make_work()
    work.upgrade = dict(reasons=["image_id a -> b"], from_image="knarr:1", from_image_id="sha256:a",
                        to_image="knarr-cluster-node:latest", to_image_id=IMAGE_ID)
    work.previous = nc.previous_name(work.name)
    work.failed, work.reason = True, "node alpha (fenrir-alpha) is not alive: timed out"
    old = dict(inspect_of(work, state="exited", image_id="sha256:a"), Name="/" + work.previous, Id="old")
    old["Config"] = dict(old["Config"], Image="knarr:1")
    api = NamedApi({work.previous: old, work.name: inspect_of(work, state="running")})
    rec = nc.Reconciler(SimpleNamespace(api=api), wait=False)
    rec.roll_back(work)
    kept = nc.previous_name(work.name)
    assert api.calls == [("remove_container", work.name), ("rename", kept, work.name), ("start", work.name)]
    assert work.rolled_back and work.previous is None and work.container_id == "old"
    assert work.running_image == ("knarr:1", "sha256:a") and work.upgrade_answer.endswith("timed out")
