"""fenrir.fleet fleet-scale benchmark: the collection against what the engine itself needs.

    python bench/fleet_bench.py --nodes 50
    python bench/fleet_bench.py --nodes 3 --skip-baselines     # smoke run (make test)

One run on the local Docker engine, same image, same network (fenrir-fleet), same address block,
one phase after another (each phase's containers are removed before the next), in the order
cli, community.docker loop, floor, fenrir.fleet, floor again (the floor brackets what it is compared
with; ratios use the mean of the two samples):

  floor        Docker API from Python, ThreadPoolExecutor(8): build files, create, put_archive,
               start, wait for echo; then remove all (force) with the same pool = floor removal
  cli          the original skill's sequence with the docker CLI, one node after another
               (create, 3x cp, start; no echo wait -- the skill had none)
  cd loop      bench/baseline_community_docker.yml with ansible-playbook; then a re-run
  fenrir.fleet playbooks/provision.yml on a generated inventory; re-run (must be changed=0);
               expansion (+5 hosts); --check (must change nothing); decommission.yml

Correctness is asserted from outside after provisioning (containers, addresses, limits, registry,
status + echo probes) and after decommission; any problem makes the exit status non-zero.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchenv  # noqa: E402  (bench/, beside this script)
from proctree import TreeSampler  # noqa: E402  (bench/, beside this script)

REPO = benchenv.use_project_venv(__file__)

import yaml  # noqa: E402  (from ansible-core's dependencies)

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_config as kc  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.container_files import make_tar  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import normalize_node  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import (  # noqa: E402
    APIError, NotFound, make_client)
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import (  # noqa: E402
    ProbeError, probe_once, wait_until_alive)
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_wire import Identity  # noqa: E402

IMAGE = "knarr-cluster-node:latest"
NETWORK = "fenrir-fleet"
SUBNET = ipaddress.IPv4Network("172.21.0.0/24")
GATEWAY = ipaddress.IPv4Address("172.21.0.1")
POOL_FIRST = ipaddress.IPv4Address("172.21.0.10")   # the collection's default pool
POOL_LAST = ipaddress.IPv4Address("172.21.0.249")
NODE_PORT = 9010
MEMORY = 256 * 1024 * 1024
PIDS = 50
POOL_THREADS = 8
EXPANSION = 5
TMP_PREFIX = "fenrir-bench-"
LOCK_PATH = os.path.join(tempfile.gettempdir(), "fenrir-bench.lock")
BASELINE_NAME_RE = re.compile(r"^bench-(floor|cli|cd)-\d{3}$")
FLEET_NAME_RE = re.compile(r"^fenrir-b\d{3}$")
RECAP_RE = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                      r"(?:\s+skipped=(\d+))?(?:\s+rescued=(\d+))?(?:\s+ignored=(\d+))?", re.M)
TARGETS = {"provision": 1.5, "rerun": 0.25, "decommission": 1.5}

# The benchmark's own provisioner identity for the baselines' files and probes (the collection's phases use
# the registry's, made on first use).
PROVISIONER = Identity.generate()

STOP = threading.Event()          # set on Ctrl-C / SIGTERM: pool workers stop before their next step
CURRENT_CHILD = {"proc": None}    # the ansible-playbook / docker CLI child running now


class BenchFailure(Exception):
    """Something the benchmark asserts is wrong; the message says what."""


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def run_measured(cmd, log_path, env=None, cwd=REPO):
    """Run a command; returns dict(rc, wall, out, peak_pss_kib, peak_rss_sum_kib, max_single_rss_kib)."""
    with open(log_path, "wb") as out:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=out, stderr=subprocess.STDOUT)
        CURRENT_CHILD["proc"] = proc
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            # wait4: the rusage of this child and the descendants it waited for -> ru_maxrss is the
            # largest single process of the tree (KiB on Linux).
            _pid, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            sampler.done.set()
            CURRENT_CHILD["proc"] = None
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    text = Path(log_path).read_text(errors="replace")
    return dict(rc=proc.returncode, wall=wall, out=text, peak_pss_kib=sampler.peak_pss,
                peak_rss_sum_kib=sampler.peak_rss, max_single_rss_kib=usage.ru_maxrss,
                peak_procs=sampler.peak_procs, log=str(log_path), tasks=task_times(text))


def recap(text):
    """{'hosts': n, 'changed': sum, 'failed': sum, 'unreachable': sum} from a PLAY RECAP."""
    part = text[text.rfind("PLAY RECAP"):] if "PLAY RECAP" in text else ""
    rows = RECAP_RE.findall(part)
    return dict(hosts=len(rows), ok=sum(int(r[1]) for r in rows), changed=sum(int(r[2]) for r in rows),
                unreachable=sum(int(r[3]) for r in rows), failed=sum(int(r[4]) for r in rows))


TASK_TIME_RE = re.compile(r"^(.*?) -+ (\d+\.\d+)s$", re.M)


def task_times(text):
    """[(task, seconds), ...] from the profile_tasks summary, slowest first."""
    part = text[text.rfind("TASKS RECAP"):] if "TASKS RECAP" in text else ""
    return [(name.strip(), float(sec)) for name, sec in TASK_TIME_RE.findall(part)]


def tail(text, lines=25):
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------- Docker helpers

def pool_map(fn, items):
    """fn over items on POOL_THREADS threads; Ctrl-C cancels what has not started."""
    pool = ThreadPoolExecutor(max_workers=POOL_THREADS)
    futures = [pool.submit(fn, item) for item in items]
    try:
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=not STOP.is_set(), cancel_futures=True)


def inspect(client, name):
    try:
        return client.api.inspect_container(name)
    except NotFound:
        return None


def is_bench_container(name, labels, tmp_root):
    if BASELINE_NAME_RE.match(name):
        return True
    reg = (labels or {}).get("fenrir.fleet.registry", "")
    return bool(FLEET_NAME_RE.match(name)) and reg.startswith(os.path.join(tmp_root, TMP_PREFIX))


def bench_containers(client, tmp_root):
    found = []
    for c in client.api.containers(all=True):
        name = (c.get("Names") or ["/"])[0].lstrip("/")
        if is_bench_container(name, c.get("Labels"), tmp_root):
            found.append(name)
    return sorted(found)


def remove_all(client, names):
    def one(name):
        try:
            client.api.remove_container(name, force=True)
        except NotFound:
            pass
    pool_map(one, names)


def ensure_network(client):
    try:
        net = client.api.inspect_network(NETWORK)
    except NotFound:
        log("network %s missing: creating it (subnet %s, gateway %s)" % (NETWORK, SUBNET, GATEWAY))
        from docker.types import IPAMConfig, IPAMPool
        client.api.create_network(NETWORK, driver="bridge",
                                  ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(SUBNET), gateway=str(GATEWAY))]))
        net = client.api.inspect_network(NETWORK)
    subnets = [c.get("Subnet") for c in (net.get("IPAM") or {}).get("Config") or []]
    if str(SUBNET) not in subnets:
        raise BenchFailure("network %s exists with subnet(s) %s, not %s" % (NETWORK, subnets, SUBNET))
    return net


def free_block(client, size):
    """The highest run of `size` consecutive addresses in the collection's pool that no container on
    the network holds (the real fleet allocates from the bottom of the pool, so the top is safest)."""
    net = client.api.inspect_network(NETWORK)
    used = set()
    for c in (net.get("Containers") or {}).values():
        addr = (c.get("IPv4Address") or "").split("/")[0]
        if addr:
            used.add(ipaddress.IPv4Address(addr))
    last = POOL_LAST
    while int(last) - size + 1 >= int(POOL_FIRST):
        first = ipaddress.IPv4Address(int(last) - size + 1)
        clash = [a for a in used if first <= a <= last]
        if not clash:
            return first, last, sorted(used)
        last = max(clash) - 1
    raise BenchFailure("no %d free consecutive addresses in %s-%s on %s (in use: %s)"
                       % (size, POOL_FIRST, POOL_LAST, NETWORK, ", ".join(map(str, sorted(used)))))


# --------------------------------------------------------------------------- node material

def fleet_group_vars():
    path = REPO / "inventories" / "local" / "group_vars" / "knarr_nodes.yml"
    return yaml.safe_load(path.read_text()) or {}


def node_material(label, ip, group_vars):
    """Everything one node needs, built with the collection's module_utils exactly as it does:
    spec -> knarr.toml (TOML writer), echo.py, node.db with a fresh identity."""
    spec = normalize_node(dict(
        label=label, ip=ip,
        provisioner_node_id=group_vars.get("knarr_node_provisioner_node_id") or PROVISIONER.node_id,
        bootstrap=list(group_vars.get("knarr_node_bootstrap") or []),
    ))
    seed = ident.new_seed()
    files = kc.node_files(spec, ip)
    files[kc.CONFIG_DIR + "/node.db"] = (ident.build_node_db(seed), 0o600)
    return dict(label=label, ip=ip, spec=spec, files=files, node_id=ident.node_id_from_seed(seed))


def write_files(node, directory):
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for path, (data, mode) in node["files"].items():
        target = directory / os.path.basename(path)
        target.write_bytes(data)
        os.chmod(target, mode)
        out[os.path.basename(path)] = str(target)
    return out


# --------------------------------------------------------------------------- phases

def phase_floor(client, ips, group_vars, problems):
    names = ["bench-floor-%03d" % (i + 1) for i in range(len(ips))]

    def one(i):
        try:
            return _one(i)
        except APIError as exc:
            return "%s (%s): Docker API error: %s" % (names[i], ips[i], getattr(exc, "explanation", None) or exc)

    def _one(i):
        if STOP.is_set():
            return None
        name, ip = names[i], str(ips[i])
        node = node_material("f%03d" % (i + 1), ip, group_vars)
        # The same least-privilege container the collection makes (user, no capability, no-new-privileges,
        # bounded logs): the floor is what the engine needs for that container, not for a laxer one.
        host_config = client.api.create_host_config(
            mem_limit=MEMORY, memswap_limit=MEMORY, pids_limit=PIDS,
            restart_policy={"Name": "unless-stopped"}, network_mode=NETWORK, cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}})
        networking = client.api.create_networking_config(
            {NETWORK: client.api.create_endpoint_config(ipv4_address=ip)})
        client.api.create_container(image=IMAGE, name=name, hostname=name, host_config=host_config,
                                    networking_config=networking, detach=True, user="10001:10001")
        if STOP.is_set():
            return None
        client.api.put_archive(name, kc.CONFIG_DIR, make_tar(node["files"], kc.CONFIG_DIR))
        client.api.start(name)
        try:
            wait_until_alive(ip, NODE_PORT, node["node_id"], timeout=60, identity=PROVISIONER)
        except ProbeError as exc:
            return "%s (%s): %s" % (name, ip, exc)
        return None

    log("floor: %d nodes, Docker API, %d threads" % (len(ips), POOL_THREADS))
    t0 = time.monotonic()
    errors = [e for e in pool_map(one, range(len(ips))) if e]
    wall = time.monotonic() - t0
    problems.extend("floor: " + e for e in errors)
    log("floor: %.2f s%s" % (wall, "" if not errors else " (%d nodes failed)" % len(errors)))
    t0 = time.monotonic()
    remove_all(client, names)
    removal = time.monotonic() - t0
    log("floor removal: %.2f s" % removal)
    return dict(wall=wall, removal=removal, nodes=len(ips), failed=len(errors))


def phase_cli(client, ips, group_vars, work, problems):
    names = ["bench-cli-%03d" % (i + 1) for i in range(len(ips))]
    dirs = []
    for i, ip in enumerate(ips):  # rendering is not timed (the skill got its files handed in)
        dirs.append(write_files(node_material("c%03d" % (i + 1), str(ip), group_vars), work / names[i]))
    env = dict(os.environ)
    log("cli: %d nodes, docker CLI, one after another (no echo wait)" % len(ips))
    t0 = time.monotonic()
    for i, ip in enumerate(ips):
        if STOP.is_set():
            raise KeyboardInterrupt
        name = names[i]
        cmds = [["docker", "create", "--name", name, "--hostname", name, "--network", NETWORK, "--ip", str(ip),
                 "--memory", "256m", "--memory-swap", "256m", "--pids-limit", str(PIDS),
                 "--restart", "unless-stopped", IMAGE],
                # `docker cp -` of a tar owned by the node's user (10001): a plain `docker cp` makes the files
                # root's, and the node could not read its 0600 node.db.
                _cp_as_node(dirs[i]["knarr.toml"], name, "/opt/knarr/"),
                _cp_as_node(dirs[i]["echo.py"], name, "/opt/knarr/skills/"),
                _cp_as_node(dirs[i]["node.db"], name, "/opt/knarr/"),
                ["docker", "start", name]]
        for cmd in cmds:
            res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
            if res.returncode:
                raise BenchFailure("cli: %s failed: %s" % (" ".join(cmd[:2]), res.stderr.decode().strip()))
    wall = time.monotonic() - t0
    log("cli: %.2f s" % wall)
    # Not timed: the nodes boot, and we check they came up (the skill itself never looked).
    alive = pool_map(lambda i: _alive(str(ips[i]), None, 30), range(len(ips)))
    problems.extend("cli: %s did not answer: %s" % (names[i], e) for i, e in enumerate(alive) if e)
    remove_all(client, names)
    return dict(wall=wall, nodes=len(ips), note="no echo wait (the skill had none); removal not timed")


def _cp_as_node(path, container, directory):
    """A `docker cp` of one file into ``directory`` of ``container``, owned by the node's user (uid/gid 10001)."""
    return ["bash", "-o", "pipefail", "-c", 'tar --owner=10001 --group=10001 -C "$1" -cf - "$2" | docker cp - "$3:$4"',
            "cp", os.path.dirname(path), os.path.basename(path), container, directory]


def _alive(ip, node_id, timeout):
    try:
        wait_until_alive(ip, NODE_PORT, node_id, timeout=timeout, identity=PROVISIONER)
        return None
    except ProbeError as exc:
        return str(exc)


def ansible_env():
    env = dict(os.environ)
    env["PATH"] = "%s:%s" % (REPO / ".venv" / "bin", env.get("PATH", ""))
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_RETRY_FILES_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    # Per-task times in every log (and in the JSON): where a run spends its time.
    env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "8"
    return env


def playbook_cmd(*args):
    return [str(REPO / ".venv" / "bin" / "ansible-playbook")] + list(args)


def phase_community_docker(client, ips, group_vars, work, logs, problems, total_nodes):
    """ips may be a sample of the fleet (--cd-nodes): the loop is strictly sequential, so its time is
    a fixed part (playbook start, outside any task) plus the task times, which grow linearly with the
    nodes; the full-fleet figure is extrapolated as fixed + task time * total/sample."""
    names = ["bench-cd-%03d" % (i + 1) for i in range(len(ips))]
    nodes = []
    for i, ip in enumerate(ips):  # rendered beforehand, not timed
        files = write_files(node_material("d%03d" % (i + 1), str(ip), group_vars), work / names[i])
        nodes.append(dict(name=names[i], ip=str(ip), dir=os.path.dirname(files["knarr.toml"])))
    inv = work / "cd-inventory.yml"
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}))
    extra = work / "cd-vars.json"
    extra.write_text(json.dumps(dict(bench_nodes=nodes, bench_image=IMAGE, bench_network=NETWORK,
                                     bench_port=NODE_PORT)))
    cmd = playbook_cmd("-i", str(inv), "-e", "@%s" % extra, str(REPO / "bench" / "baseline_community_docker.yml"))
    out = {}
    for key in ("first", "rerun"):
        log("community.docker loop (%s run): %d nodes" % (key, len(ips)))
        res = run_measured(cmd, logs / ("cd-%s.log" % key), env=ansible_env())
        rc = recap(res["out"])
        task_sum = sum(sec for _name, sec in res["tasks"])
        scale = float(total_nodes) / len(ips)
        out[key] = dict(wall=res["wall"] if scale == 1 else res["wall"] - task_sum + task_sum * scale,
                        measured_wall=res["wall"], measured_nodes=len(ips), extrapolated=scale != 1,
                        task_seconds=task_sum, rc=res["rc"], changed=rc["changed"],
                        peak_pss_kib=res["peak_pss_kib"],
                        peak_rss_sum_kib=res["peak_rss_sum_kib"], max_single_rss_kib=res["max_single_rss_kib"],
                        log=res["log"], slowest_tasks=res["tasks"][:5])
        log("community.docker loop (%s run): %.2f s, rc=%d, changed=%d" % (key, res["wall"], res["rc"],
                                                                           rc["changed"]))
        if res["rc"] != 0:
            problems.append("community.docker baseline (%s run) failed rc=%d; log %s:\n%s"
                            % (key, res["rc"], res["log"], tail(res["out"])))
            break
    remove_all(client, names)
    out["nodes"] = total_nodes
    out["measured_nodes"] = len(ips)
    return out


# --------------------------------------------------------------------------- the collection

def write_inventory(path, registry, count, group_vars, first_ip, last_ip):
    hosts = {"bench-n%03d" % i: {"knarr_node_label": "b%03d" % i} for i in range(1, count + 1)}
    gv = dict(group_vars)
    gv.update({
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "knarr_node_registry": str(registry),
        "knarr_node_pool_start": str(first_ip),
        "knarr_node_pool_end": str(last_ip),
    })
    path.write_text(yaml.safe_dump({"knarr_nodes": {"hosts": hosts, "vars": gv}}, sort_keys=False))


def registry_rows(registry):
    """The registry's nodes table, read from a copy: opening the live WAL database, even read-only,
    would leave -wal/-shm files behind and disturb the --check comparison."""
    with tempfile.TemporaryDirectory(prefix="fenrir-bench-reg-") as tmp:
        for suffix in ("", "-wal"):
            if os.path.exists(str(registry) + suffix):
                shutil.copyfile(str(registry) + suffix, os.path.join(tmp, "fleet.db" + suffix))
        conn = sqlite3.connect(os.path.join(tmp, "fleet.db"))
        try:
            conn.row_factory = sqlite3.Row
            return {r["label"]: dict(r) for r in
                    conn.execute("SELECT label, ip, status, node_id, container_id FROM nodes")}
        finally:
            conn.close()


def verify_fleet(client, registry, count):
    """From outside: containers, addresses, limits, registry status, status + echo on every node."""
    errors = []
    try:
        rows = registry_rows(registry)
    except sqlite3.Error as exc:
        return ["registry %s unreadable: %s" % (registry, exc)]
    labels = ["b%03d" % i for i in range(1, count + 1)]

    def one(label):
        errs = []
        row = rows.get(label)
        name = "fenrir-" + label
        if row is None:
            return ["%s: no registry record" % label]
        if row["status"] != "online":
            errs.append("%s: registry status %r, expected 'online'" % (label, row["status"]))
        info = inspect(client, name)
        if info is None:
            return errs + ["%s: container %s does not exist" % (label, name)]
        net = ((info.get("NetworkSettings") or {}).get("Networks") or {}).get(NETWORK) or {}
        ip = net.get("IPAddress")
        if ip != row["ip"]:
            errs.append("%s: container IP %r != registry IP %r" % (label, ip, row["ip"]))
        host = info.get("HostConfig") or {}
        if host.get("Memory") != MEMORY:
            errs.append("%s: Memory %r, expected %d" % (label, host.get("Memory"), MEMORY))
        if host.get("MemorySwap") != MEMORY:
            errs.append("%s: MemorySwap %r, expected %d" % (label, host.get("MemorySwap"), MEMORY))
        if host.get("PidsLimit") != PIDS:
            errs.append("%s: PidsLimit %r, expected %d" % (label, host.get("PidsLimit"), PIDS))
        if (host.get("RestartPolicy") or {}).get("Name") != "unless-stopped":
            errs.append("%s: restart policy %r" % (label, host.get("RestartPolicy")))
        if host.get("CapDrop") != ["ALL"] or host.get("CapAdd") or host.get("SecurityOpt") != ["no-new-privileges"] \
                or info["Config"].get("User") != "10001:10001":
            errs.append("%s: not least-privileged: CapDrop %r, CapAdd %r, SecurityOpt %r, User %r" % (
                label, host.get("CapDrop"), host.get("CapAdd"), host.get("SecurityOpt"), info["Config"].get("User")))
        if row["container_id"] and row["container_id"] != info["Id"]:
            errs.append("%s: registry container_id %s != container %s" % (label, row["container_id"][:12],
                                                                          info["Id"][:12]))
        if not row["container_id"]:
            errs.append("%s: registry has no container_id" % label)
        if (info.get("State") or {}).get("Status") != "running":
            errs.append("%s: container state %r" % (label, (info.get("State") or {}).get("Status")))
        try:
            status = probe_once(row["ip"], NODE_PORT, row["node_id"], timeout=3.0, identity=PROVISIONER)
            if status.get("node_id") != row["node_id"]:
                errs.append("%s: node reports node_id %s, registry %s" % (label, status.get("node_id"),
                                                                          row["node_id"]))
        except (ProbeError, OSError) as exc:
            errs.append("%s: status/echo probe on %s:%d failed: %s" % (label, row["ip"], NODE_PORT, exc))
        return errs

    for errs in pool_map(one, labels):
        errors.extend(errs)
    extra = sorted(set(rows) - set(labels))
    extra_live = [lb for lb in extra if rows[lb]["status"] != "destroyed"]
    if extra_live:
        errors.append("registry holds records not in the inventory: %s" % ", ".join(extra_live))
    return errors


def snapshot(client, registry, tmp_root):
    """What must not change in a --check run: the bench containers and the registry files' bytes."""
    containers = {}
    for name in bench_containers(client, tmp_root):
        info = inspect(client, name)
        if info is None:
            continue
        containers[name] = dict(id=info["Id"], state=info["State"].get("Status"),
                                started=info["State"].get("StartedAt"), restarts=info.get("RestartCount"))
    files = {}
    reg_dir = Path(registry).parent
    for p in sorted(reg_dir.iterdir()):
        # -shm is SQLite's shared-memory index: any reader rewrites it, it holds no data.
        if p.is_file() and not p.name.endswith("-shm"):
            files[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return dict(containers=containers, files=files)


def phase_collection(client, count, first_ip, last_ip, group_vars, work, logs, problems, tmp_root, result):
    """Fills `result` as it goes, so the rows measured before a failure are still reported."""
    registry = work / "registry" / "fleet.db"
    inv = work / "hosts.yml"
    env = ansible_env()
    result["nodes"] = count

    def play(key, playbook, *extra, hosts=count, expect_changed_zero=False):
        write_inventory(inv, registry, hosts, group_vars, first_ip, last_ip)
        log("fenrir.fleet %s: %d hosts" % (key, hosts))
        res = run_measured(playbook_cmd("-i", str(inv), str(REPO / "playbooks" / playbook), *extra),
                           logs / ("fleet-%s.log" % key), env=env)
        rc = recap(res["out"])
        entry = dict(wall=res["wall"], rc=res["rc"], hosts=hosts, changed=rc["changed"], failed=rc["failed"],
                     recap_hosts=rc["hosts"], peak_pss_kib=res["peak_pss_kib"],
                     peak_rss_sum_kib=res["peak_rss_sum_kib"], max_single_rss_kib=res["max_single_rss_kib"],
                     peak_procs=res["peak_procs"], log=res["log"], slowest_tasks=res["tasks"][:5])
        result[key] = entry
        log("fenrir.fleet %s: %.2f s, rc=%d, changed=%d, peak controller PSS %.0f MiB"
            % (key, res["wall"], res["rc"], rc["changed"], res["peak_pss_kib"] / 1024))
        if res["rc"] != 0:
            raise BenchFailure("fenrir.fleet %s failed (rc=%d); log %s:\n%s"
                               % (key, res["rc"], res["log"], tail(res["out"], 40)))
        # (The recap lists only hosts that ran a task: with run_once roles that may be one host.)
        if rc["hosts"] == 0 or rc["failed"] or rc["unreachable"]:
            problems.append("fenrir.fleet %s: recap shows %d hosts, failed=%d, unreachable=%d"
                            % (key, rc["hosts"], rc["failed"], rc["unreachable"]))
        if expect_changed_zero and rc["changed"] != 0:
            problems.append("fenrir.fleet %s: reported changed=%d, expected changed=0 (log %s)"
                            % (key, rc["changed"], res["log"]))
        return entry

    def decommissioned(key):
        left = [n for n in bench_containers(client, tmp_root) if FLEET_NAME_RE.match(n)]
        if left:
            problems.append("after %s: containers remain: %s" % (key, ", ".join(left)))
        live = sorted(lb for lb, r in registry_rows(registry).items() if r["status"] != "destroyed")
        if live:
            problems.append("after %s: registry still holds live records: %s" % (key, ", ".join(live)))

    # The sequence: provision, re-run with nothing to change, decommission. The decommission
    # follows the re-run, as the floor's removal follows its nodes answering: both remove nodes of
    # the same age (before the image's first health checks, 30 s after start, load the engine).
    play("provision", "provision.yml")
    errs = verify_fleet(client, registry, count)
    problems.extend("after provision: " + e for e in errs)
    if errs:
        raise BenchFailure("the fleet is not what provision.yml promised (%d problems)" % len(errs))

    play("rerun", "provision.yml", expect_changed_zero=True)
    problems.extend("after re-run: " + e for e in verify_fleet(client, registry, count))

    play("decommission", "decommission.yml", hosts=count)
    decommissioned("decommission")

    # Growth, on a fleet provisioned again (a second sample of provisioning): +5 hosts, a dry run over
    # all, the 5 removed again with --limit, then the N removed (a second, older, decommission sample).
    play("provision2", "provision.yml")
    problems.extend("after provisioning again: " + e for e in verify_fleet(client, registry, count))

    total = count + EXPANSION
    play("expansion", "provision.yml", hosts=total)
    errs = verify_fleet(client, registry, total)
    problems.extend("after expansion: " + e for e in errs)

    before = snapshot(client, registry, tmp_root)
    play("check", "provision.yml", "--check", hosts=total, expect_changed_zero=True)
    after = snapshot(client, registry, tmp_root)
    if before != after:
        changed_c = sorted(k for k in set(before["containers"]) | set(after["containers"])
                           if before["containers"].get(k) != after["containers"].get(k))
        changed_f = sorted(k for k in set(before["files"]) | set(after["files"])
                           if before["files"].get(k) != after["files"].get(k))
        problems.append("--check changed things: containers %s, registry files %s"
                        % (changed_c or "none", changed_f or "none"))
    result["check"]["unchanged"] = before == after

    added = ",".join("bench-n%03d" % i for i in range(count + 1, total + 1))
    play("shrink", "decommission.yml", "--limit", added, hosts=total)
    rows = registry_rows(registry)
    gone = sorted(lb for lb, r in rows.items() if r["status"] == "destroyed" and int(lb[1:]) > count)
    if gone != ["b%03d" % i for i in range(count + 1, total + 1)]:
        problems.append("after shrink: destroyed records are %s, expected the %d added nodes" % (gone, EXPANSION))
    problems.extend("after shrink: " + e for e in verify_fleet(client, registry, count))

    play("decommission2", "decommission.yml", hosts=count)
    decommissioned("decommission after growth")
    return result


# --------------------------------------------------------------------------- report

def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r, unit="x"):
    return "%.2f%s" % (r, unit) if r is not None else "-"


def mib(kib):
    return "%.0f" % (kib / 1024.0) if kib else "-"


def build_table(res):
    n = res["nodes"]
    floor = res.get("floor") or {}
    fl = res.get("fleet") or {}
    rows = []  # phase, nodes, wall, ratio, vs, target, verdict, changed, rss

    def verdict(r, target):
        if r is None or target is None:
            return ""
        return "ok" if r <= target else "MISSED"

    if floor:
        rows.append(("floor: Docker API, 8 threads, +echo wait" + (" (mean)" if len(floor["walls"]) > 1 else ""),
                     n, floor["wall"], 1.0, "floor", None, "", "-", "-"))
        if len(floor["walls"]) > 1:
            rows.append(("  floor samples, before/after: %s" % " / ".join("%.2f" % w for w in floor["walls"]),
                         "", None, None, "", None, "", "", ""))
    cli = res.get("cli")
    if cli:
        rows.append(("cli: docker CLI sequential (no echo wait)", n, cli["wall"], ratio(cli["wall"], floor.get("wall")),
                     "floor", None, "", "-", "-"))
    cd = res.get("community_docker") or {}
    cd_n = n if not cd.get("first", {}).get("extrapolated") else "%d*" % n
    if cd.get("first"):
        rows.append(("community.docker loop (ansible-playbook)", cd_n, cd["first"]["wall"],
                     ratio(cd["first"]["wall"], floor.get("wall")), "floor", None, "", cd["first"]["changed"],
                     mib(cd["first"]["peak_pss_kib"])))
    if cd.get("rerun"):
        rows.append(("community.docker loop, re-run", cd_n, cd["rerun"]["wall"],
                     ratio(cd["rerun"]["wall"], cd["first"]["wall"]), "own 1st run", None, "",
                     cd["rerun"]["changed"], mib(cd["rerun"]["peak_pss_kib"])))
    if fl.get("provision"):
        p = fl["provision"]
        r = ratio(p["wall"], floor.get("wall"))
        rows.append(("fenrir.fleet provision", n, p["wall"], r, "floor", TARGETS["provision"],
                     verdict(r, TARGETS["provision"]), p["changed"], mib(p["peak_pss_kib"])))
    if fl.get("rerun"):
        p = fl["rerun"]
        r = ratio(p["wall"], fl["provision"]["wall"])
        rows.append(("fenrir.fleet re-run (nothing to change)", n, p["wall"], r, "own 1st run", TARGETS["rerun"],
                     verdict(r, TARGETS["rerun"]), p["changed"], mib(p["peak_pss_kib"])))
    if fl.get("decommission"):
        p = fl["decommission"]
        r = ratio(p["wall"], floor.get("removal"))
        rows.append(("fenrir.fleet decommission (after the re-run)", n, p["wall"], r, "floor removal",
                     TARGETS["decommission"], verdict(r, TARGETS["decommission"]), p["changed"],
                     mib(p["peak_pss_kib"])))
    if floor:
        name = "floor removal: Docker API rm -f, 8 thr" + (" (mean)" if len(floor["removals"]) > 1 else "")
        rows.append((name, n, floor["removal"], 1.0, "floor removal", None, "", "-", "-"))
        if len(floor["removals"]) > 1:
            rows.append(("  floor removal samples: %s" % " / ".join("%.2f" % w for w in floor["removals"]),
                         "", None, None, "", None, "", "", ""))
    if fl.get("provision2"):
        p = fl["provision2"]
        rows.append(("fenrir.fleet provision again (2nd sample)", n, p["wall"], ratio(p["wall"], floor.get("wall")),
                     "floor", None, "", p["changed"], mib(p["peak_pss_kib"])))
    if fl.get("expansion"):
        p = fl["expansion"]
        rows.append(("fenrir.fleet expansion (+%d)" % EXPANSION, "%d+%d" % (n, EXPANSION), p["wall"],
                     ratio(p["wall"], floor.get("wall")), "floor", None, "", p["changed"], mib(p["peak_pss_kib"])))
    if fl.get("check"):
        p = fl["check"]
        rows.append(("fenrir.fleet --check (nothing to change)", n + EXPANSION, p["wall"],
                     ratio(p["wall"], fl["provision"]["wall"]), "own 1st run", None,
                     "unchanged" if p.get("unchanged") else "CHANGED", p["changed"], mib(p["peak_pss_kib"])))
    if fl.get("shrink"):
        p = fl["shrink"]
        rows.append(("fenrir.fleet shrink (-%d, --limit)" % EXPANSION, EXPANSION, p["wall"], None, "", None, "",
                     p["changed"], mib(p["peak_pss_kib"])))
    if fl.get("decommission2"):
        p = fl["decommission2"]
        rows.append(("fenrir.fleet decommission after growth", n, p["wall"], ratio(p["wall"], floor.get("removal")),
                     "floor removal", None, "", p["changed"], mib(p["peak_pss_kib"])))

    head = ("phase", "nodes", "wall s", "ratio", "ratio to", "target", "", "changed", "ctrl MiB")
    body = [(a, str(b), "%.2f" % c if c is not None else "", fmt_ratio(d) if c is not None else "", e,
             ("<=%.2fx" % f) if f else "", g, str(h), i)
            for a, b, c, d, e, f, g, h, i in rows]
    widths = [max(len(r[k]) for r in [head] + body) for k in range(len(head))]
    right = {1, 2, 3, 7, 8}

    def line(r):
        return "  ".join(r[k].rjust(widths[k]) if k in right else r[k].ljust(widths[k]) for k in range(len(r)))
    out = [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in body]
    return "\n".join(out)


# --------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--nodes", type=int, default=50, help="fleet size (default 50)")
    ap.add_argument("--skip-baselines", action="store_true",
                    help="only the collection's phases (smoke run; no ratios to the floor)")
    ap.add_argument("--cd-nodes", type=int, default=10, metavar="K",
                    help="run the community.docker loop on K nodes only and extrapolate to --nodes (it is "
                         "sequential: fixed start + per-node task time); 0 = all nodes (about 8 s per node "
                         "and run on a busy 2-core machine). Default 10")
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "latest.json"),
                    help="where to write the JSON results (default bench/results/latest.json)")
    args = ap.parse_args(argv)
    if not 1 <= args.nodes <= 999 - EXPANSION:
        ap.error("--nodes must be between 1 and %d" % (999 - EXPANSION))
    if args.cd_nodes < 0:
        ap.error("--cd-nodes must be 0 (all) or a positive number")

    signal.signal(signal.SIGTERM, _on_sigterm)
    lock = open(LOCK_PATH, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("fleet_bench: another benchmark run holds %s" % LOCK_PATH, file=sys.stderr)
        return 2

    tmp_root = tempfile.gettempdir()
    results_path = Path(args.results)
    logs = results_path.parent / (results_path.stem + "-logs")
    logs.mkdir(parents=True, exist_ok=True)
    client = make_client({}, max_pool_size=16)
    problems = []
    res = dict(nodes=args.nodes, expansion=EXPANSION, image=IMAGE, network=NETWORK,
               started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), skip_baselines=args.skip_baselines)
    res["loadavg_start"] = os.getloadavg()
    t_start = time.monotonic()
    work = None
    aborted = None
    try:
        # Leftovers of an earlier, killed run (we hold the lock, so no other bench is running).
        left = bench_containers(client, tmp_root)
        if left:
            log("removing %d leftover bench containers: %s" % (len(left), " ".join(left[:6]) +
                                                               (" ..." if len(left) > 6 else "")))
            remove_all(client, left)
        for old in Path(tmp_root).glob(TMP_PREFIX + "*"):
            shutil.rmtree(old, ignore_errors=True)
        clash = [c["Names"][0].lstrip("/") for c in client.api.containers(all=True)
                 if FLEET_NAME_RE.match(c["Names"][0].lstrip("/"))]
        if clash:
            raise BenchFailure("containers named like the bench fleet exist and are not the bench's: %s; "
                               "the bench uses labels bNNN (fenrir-bNNN)" % ", ".join(clash))
        try:
            image = client.api.inspect_image(IMAGE)
        except NotFound:
            log("image %s missing: scripts/ensure-node-image" % IMAGE)
            subprocess.run([str(REPO / "scripts" / "ensure-node-image")], check=True)
            image = client.api.inspect_image(IMAGE)
        res["image_id"] = image["Id"]
        ensure_network(client)
        first, last, used = free_block(client, args.nodes + EXPANSION)
        res["addresses"] = "%s-%s" % (first, last)
        if used:
            log("addresses in use on %s by others: %s -> bench uses %s-%s"
                % (NETWORK, ", ".join(map(str, used)), first, last))
        ips = [ipaddress.IPv4Address(int(first) + i) for i in range(args.nodes)]
        group_vars = fleet_group_vars()
        work = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))

        if not args.skip_baselines:
            # The floor runs last of the baselines, right before the collection it is compared with
            # (and once more after it): on a busy machine the load drifts over minutes.
            res["cli"] = phase_cli(client, ips, group_vars, work, problems)
            cd_count = min(args.cd_nodes or args.nodes, args.nodes)
            if cd_count < args.nodes:
                log("community.docker loop: sampled on %d of %d nodes (--cd-nodes 0 for all)"
                    % (cd_count, args.nodes))
            res["community_docker"] = phase_community_docker(client, ips[:cd_count], group_vars, work, logs,
                                                             problems, args.nodes)
            res["floor_samples"] = [phase_floor(client, ips, group_vars, problems)]
        res["fleet"] = {}
        try:
            phase_collection(client, args.nodes, first, last, group_vars, work, logs, problems, tmp_root,
                             res["fleet"])
        except BenchFailure as exc:
            problems.append(str(exc))
        if not args.skip_baselines:
            # Second floor sample after the collection: the floor the collection is compared with is
            # the mean of the samples taken right before and right after it (load drifts).
            left = [n for n in bench_containers(client, tmp_root) if FLEET_NAME_RE.match(n)]
            if left:  # a failed collection phase leaves its nodes on the addresses the floor needs
                remove_all(client, left)
            res["floor_samples"].append(phase_floor(client, ips, group_vars, problems))
    except KeyboardInterrupt:
        STOP.set()
        aborted = "interrupted"
    except BenchFailure as exc:
        problems.append(str(exc))
    except Exception as exc:  # report it with the rest, after cleaning up
        traceback.print_exc()
        problems.append("unexpected %s: %s" % (type(exc).__name__, exc))
    finally:
        proc = CURRENT_CHILD["proc"]
        if proc is not None and proc.poll() is None:
            proc.terminate()
        try:
            left = bench_containers(client, tmp_root)
            if left:
                log("cleanup: removing %d bench containers" % len(left))
                STOP.clear()
                remove_all(client, left)
        except Exception as exc:  # cleanup must not hide the result
            problems.append("cleanup failed: %s" % exc)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)

    samples = res.get("floor_samples") or []
    if samples:
        res["floor"] = dict(nodes=args.nodes, wall=sum(x["wall"] for x in samples) / len(samples),
                            removal=sum(x["removal"] for x in samples) / len(samples),
                            walls=[x["wall"] for x in samples], removals=[x["removal"] for x in samples])
    res["total_seconds"] = round(time.monotonic() - t_start, 1)
    res["loadavg_end"] = os.getloadavg()
    res["problems"] = problems
    res["aborted"] = aborted
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")

    print()
    print("fenrir.fleet bench: %d nodes (+%d expansion), image %s (%s), network %s, addresses %s"
          % (args.nodes, EXPANSION, IMAGE, res.get("image_id", "?")[7:19], NETWORK, res.get("addresses", "?")))
    print(build_table(res))
    print("ratio: wall / (ratio to). ctrl MiB: peak summed PSS of the ansible-playbook process tree, sampled at "
          "10 Hz (JSON also has summed RSS and the largest single process from wait4).")
    print("cli and community.docker files were rendered before timing; floor and fenrir.fleet build them inside.")
    for key in ("provision", "rerun", "decommission", "provision2", "expansion", "shrink", "decommission2"):
        entry = (res.get("fleet") or {}).get(key)
        if entry and entry.get("slowest_tasks"):
            print("fenrir.fleet %-13s slowest tasks: %s" % (key, "; ".join(
                "%s %.1fs" % (name.split(" : ")[-1][:48], sec) for name, sec in entry["slowest_tasks"][:3])))
    cd = res.get("community_docker") or {}
    if (cd.get("first") or {}).get("extrapolated"):
        print("* community.docker loop measured on %d nodes (%.1f s) and extrapolated to %d: fixed start + "
              "task time x %d/%d." % (cd["measured_nodes"], cd["first"]["measured_wall"], args.nodes,
                                      args.nodes, cd["measured_nodes"]))
    print("load average at start %s, at end %s (%d cores): other work on the machine skews every row."
          % ("/".join("%.1f" % x for x in res["loadavg_start"]), "/".join("%.1f" % x for x in res["loadavg_end"]),
             os.cpu_count()))
    print("total %.0f s; results in %s" % (res["total_seconds"], results_path))
    if aborted:
        print("ABORTED: %s" % aborted, file=sys.stderr)
        return 130
    if problems:
        print("\nFAILED: %d problem(s):" % len(problems), file=sys.stderr)
        for p in problems:
            print("  - " + p, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
