"""fenrir.fleet over two managed Docker hosts: the collection against the same two engines driven from Python.

    python bench/bench_hosts.py --nodes 50            # make bench runs this after fleet_bench.py
    python bench/bench_hosts.py --nodes 50 --third 0  # without the third host's expansion

Three stand-in Docker hosts (scripts/standin-hosts: fenrir-bh-a/b/c at 172.30.0.41-43) are prepared by the docker_host
role (playbooks/docker_hosts.yml; not timed), the node image is loaded on a and b (not timed), then, in one run:

  floor          Docker API from Python over mutual TLS (the controller's certificate), a pool of 8 threads per
                 host, both hosts at once: per node the files built with the collection's module_utils, create
                 (fixed address on the host's fenrir-fleet /24, 256 MiB, 50 PIDs, node port published on the host's
                 address), put_archive, start, wait for the signed echo at host:port; then remove all (floor removal)
  fenrir.fleet   playbooks/provision.yml, N nodes named onto a and b (half each); re-run (must change nothing)
  floor again    the floor brackets the collection; ratios use the mean of the two samples
  third host     +5 nodes on fenrir-bh-c, which lacks the image (copied from the controller's engine in the run)
  decommission   playbooks/decommission.yml over the whole fleet

Correctness (not timed): after provisioning every node is online in the registry on its host and answers its
signed echo as itself where it is advertised. The result is printed and written to bench/results/hosts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchenv  # noqa: E402  (bench/, beside this script)

REPO = benchenv.use_project_venv(__file__)

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_config as kc  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_image  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_wire as wire  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.container_files import make_tar  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.docker_common import NotFound, make_client  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import (  # noqa: E402
    ProbeError, probe_once, wait_until_alive)
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import normalize_node  # noqa: E402

HOSTS = {"fenrir-bh-a": "172.30.0.41", "fenrir-bh-b": "172.30.0.42", "fenrir-bh-c": "172.30.0.43"}
PAIR = ("fenrir-bh-a", "fenrir-bh-b")
THIRD = "fenrir-bh-c"
IMAGE = "knarr-cluster-node:latest"
NETWORK = "fenrir-fleet"
MEMORY = 256 * 1024 * 1024
THREADS = 8
FLOOR_PORTS = 28000  # the floor's published ports (the collection's pool starts at 20000)
STANDIN = REPO / "scripts" / "standin-hosts"
# The floor's prober (the collection's phases probe with the registry's provisioner identity).
PROBER = wire.Identity.generate()


def log(msg):
    print("[bench-hosts %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def run(cmd, env=None, log_path=None, check=True):
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    if log_path:
        Path(log_path).write_text(proc.stdout + proc.stderr)
    if check and proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise SystemExit("%s failed (rc %d), see %s:\n%s" % (" ".join(map(str, cmd[:3])), proc.returncode, log_path, tail))
    return wall, proc


def ansible_env():
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               PATH="%s:%s" % (REPO / ".venv" / "bin", os.environ.get("PATH", "")),
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", PYTHONUNBUFFERED="1")
    return env


class Bench:
    def __init__(self, work, nodes, third):
        self.work = Path(work)
        self.nodes, self.third = nodes, third
        self.registry = self.work / "fleet.db"
        self.pki = self.work / "pki"
        self.inventory = self.work / "inventory.yml"
        self.logs = REPO / "bench" / "results" / "hosts-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.result = dict(nodes=nodes, third=third)

    # -- inventory
    def write_inventory(self, labels):
        lines = ["all:", "  hosts:", "    localhost:", "      ansible_connection: local",
                 "      ansible_python_interpreter: \"{{ ansible_playbook_python }}\"", "  vars:",
                 "    knarr_node_registry: %s" % self.registry, "    docker_host_registry: %s" % self.registry,
                 "    docker_host_ca_dir: %s" % self.pki, "    knarr_node_docker_tls_dir: %s/controller" % self.pki,
                 "    knarr_node_network: %s" % NETWORK, "    knarr_node_boot_timeout: 60", "  children:",
                 "    docker_hosts:", "      vars:", "        ansible_user: root",
                 "        ansible_ssh_private_key_file: %s/standin/id_ed25519" % self.work,
                 "        ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                 "-o LogLevel=ERROR", "        ansible_python_interpreter: /usr/bin/python3", "      hosts:"]
        for name, address in HOSTS.items():
            lines += ["        %s: {ansible_host: %s, docker_host_bind_address: %s}" % (name, address, address)]
        lines += ["    knarr_nodes:", "      vars:", "        ansible_connection: local",
                  "        ansible_python_interpreter: \"{{ ansible_playbook_python }}\"", "      hosts:"]
        for label, host in labels.items():
            lines.append("        bench-%s: {knarr_node_label: %s, knarr_node_docker_host: %s}" % (label, label, host))
        self.inventory.write_text("\n".join(lines) + "\n")

    def play(self, key, playbook, *args):
        wall, proc = run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(self.inventory),
                          str(REPO / "playbooks" / playbook)] + list(args), env=ansible_env(),
                         log_path=self.logs / ("%s.log" % key))
        changed = sum(int(m) for m in re.findall(r"changed=(\d+)", proc.stdout.split("PLAY RECAP")[-1]))
        log("%s: %.2f s (changed=%d)" % (key, wall, changed))
        self.result[key] = dict(wall=round(wall, 2), changed=changed)
        return wall, proc

    # -- engines
    def engine(self, name):
        pki = self.pki / "controller"
        return make_client(dict(docker_host="tcp://%s:2376" % HOSTS[name], tls=True, validate_certs=True,
                                ca_path=str(pki / "ca.pem"), client_cert=str(pki / "cert.pem"),
                                client_key=str(pki / "key.pem"), timeout=60), max_pool_size=THREADS + 2)

    def subnets(self):
        db = sqlite3.connect(str(self.registry))
        try:
            return {r[0]: r[1] for r in db.execute("SELECT name, subnet FROM hosts")}
        finally:
            db.close()

    # -- phases
    def floor(self, key):
        subnets = self.subnets()
        per_host = self.nodes // 2

        def host_floor(name):
            client = self.engine(name)
            import ipaddress
            net = ipaddress.IPv4Network(subnets[name])
            try:
                client.api.inspect_network(NETWORK)
            except NotFound:
                from docker.types import IPAMConfig, IPAMPool
                client.api.create_network(NETWORK, driver="bridge", ipam=IPAMConfig(pool_configs=[IPAMPool(
                    subnet=str(net), gateway=str(net.network_address + 1))]))
            names = ["bench-floor-%s-%03d" % (name[-1], i) for i in range(per_host)]

            def one(i):
                port = FLOOR_PORTS + 3 * i
                ip = str(net.network_address + 150 + i)
                spec = normalize_node(dict(label="f%s%03d" % (name[-1], i), port=port))
                seed = ident.new_seed()
                files = kc.node_files(spec, HOSTS[name])
                files[kc.CONFIG_DIR + "/node.db"] = (ident.build_node_db(seed), 0o600)
                api = client.api
                # The same least-privileged container the collection makes (node_containers.Reconciler._create).
                host_config = api.create_host_config(
                    mem_limit=MEMORY, memswap_limit=MEMORY, pids_limit=50, restart_policy={"Name": "unless-stopped"},
                    network_mode=NETWORK, port_bindings={"%d/tcp" % port: (HOSTS[name], port)}, cap_drop=["ALL"],
                    security_opt=["no-new-privileges"],
                    log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}})
                networking = api.create_networking_config({NETWORK: api.create_endpoint_config(ipv4_address=ip)})
                api.create_container(image=IMAGE, name=names[i], hostname=names[i], host_config=host_config,
                                     networking_config=networking, ports=[(port, "tcp")], detach=True,
                                     user="10001:10001")
                api.put_archive(names[i], "/", make_tar(files))
                api.start(names[i])
                wait_until_alive(HOSTS[name], port, ident.node_id_from_seed(seed), timeout=60, identity=PROBER)

            t0 = time.monotonic()
            with ThreadPoolExecutor(max_workers=THREADS) as pool:
                list(pool.map(one, range(per_host)))
            built = time.monotonic() - t0
            return client, names, built

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:
            done = list(pool.map(host_floor, PAIR))
        wall = time.monotonic() - t0
        t0 = time.monotonic()

        def remove(item):
            client, names, dummy = item
            with ThreadPoolExecutor(max_workers=THREADS) as pool:
                list(pool.map(lambda n: client.api.remove_container(n, force=True), names))
            client.close()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(remove, done))
        removal = time.monotonic() - t0
        log("%s: %.2f s for %d nodes over 2 hosts (removal %.2f s)" % (key, wall, 2 * per_host, removal))
        self.result[key] = dict(wall=round(wall, 2), removal=round(removal, 2), nodes=2 * per_host)
        return wall

    def verify(self, labels):
        db = sqlite3.connect(str(self.registry))
        try:
            rows = {r[0]: r[1:] for r in db.execute("SELECT label, docker_host, status, port, node_id FROM nodes")}
        finally:
            db.close()
        problems = []
        for label, host in labels.items():
            docker_host, status, port, node_id = rows[label]
            if docker_host != host or status != "online":
                problems.append("%s: on %s, %s" % (label, docker_host, status))
                continue
            try:
                probe_once(HOSTS[host], port, node_id, timeout=5, identity=PROBER)
            except (ProbeError, OSError) as exc:
                problems.append("%s: %s" % (label, exc))
        if problems:
            raise SystemExit("verification failed: %s" % "; ".join(problems))
        log("verified: %d nodes online where the registry says, each answering its signed echo" % len(labels))


def task_seconds(log_text, name_part):
    """The profile_tasks time of the task whose name contains name_part (0.0 when absent)."""
    for line in log_text.splitlines():
        if name_part in line:
            m = re.search(r"-+ (\d+\.\d+)s\s*$", line)
            if m:
                return float(m.group(1))
    return 0.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--nodes", type=int, default=50, help="nodes over the two hosts (default 50)")
    ap.add_argument("--third", type=int, default=5, help="nodes added on a third host at the end (0: skip)")
    ap.add_argument("--keep", action="store_true", help="leave the stand-in hosts up (for a look afterwards)")
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "hosts.json"))
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="fenrir-bench-hosts-")
    bench = Bench(work, args.nodes, args.third)
    env = dict(os.environ, FENRIR_STANDIN_DIR=str(Path(work) / "standin"))
    names = list(HOSTS) if args.third else list(PAIR)
    run([str(REPO / "scripts" / "ensure-host-image")])
    run([str(REPO / "scripts" / "ensure-node-image")])
    log("stand-in hosts %s up" % ", ".join(names))
    run([str(STANDIN), "up"] + ["%s=%s" % (n, HOSTS[n]) for n in names], env=env)
    try:
        labels = {"h%03d" % i: PAIR[i % 2] for i in range(args.nodes)}
        bench.write_inventory(labels)
        bench.play("docker_hosts (not compared)", "docker_hosts.yml", "--limit", ",".join(names))
        log("node image loaded on %s (not timed)" % ", ".join(PAIR))
        pki = bench.pki / "controller"
        engines = [dict(name=n, docker_host="tcp://%s:2376" % HOSTS[n], ca_path=str(pki / "ca.pem"),
                        client_cert=str(pki / "cert.pem"), client_key=str(pki / "key.pem")) for n in PAIR]
        copied = knarr_image.run(dict(images={IMAGE: []}, source="engine", archive=None, failed_engines={},
                                      engines=engines, docker_host="unix:///var/run/docker.sock", timeout=120))
        if copied["failed_engines"]:
            raise SystemExit("image copy failed: %s" % copied["failed_engines"])
        floor1 = bench.floor("floor")
        wall, dummy = bench.play("fenrir.fleet provision", "provision.yml")
        bench.verify(labels)
        bench.play("fenrir.fleet re-run", "provision.yml")
        floor2 = bench.floor("floor again")
        floor = (floor1 + floor2) / 2
        bench.result["ratio"] = round(wall / floor, 2)
        log("provision %.2f s against the floor's %.2f s (mean of %.2f / %.2f): %.2fx (target <= 1.5x)"
            % (wall, floor, floor1, floor2, wall / floor))
        if args.third:
            grown = dict(labels, **{"c%03d" % i: THIRD for i in range(args.third)})
            bench.write_inventory(grown)
            wall3, proc = bench.play("fenrir.fleet +%d on a third host" % args.third, "provision.yml")
            copy = task_seconds(proc.stdout, "holds the node images")
            bench.result["third_host_image_copy"] = round(copy, 2)
            log("adding %d nodes on a third host: %.2f s (%.2f s of it copying the image there)"
                % (args.third, wall3, copy))
            bench.verify(grown)
        bench.play("fenrir.fleet decommission", "decommission.yml")
    finally:
        if not args.keep:
            run([str(STANDIN), "down"] + names, env=env, check=False)
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(bench.result, indent=1) + "\n")
        log("result: %s" % json.dumps(bench.result))


if __name__ == "__main__":
    main()
