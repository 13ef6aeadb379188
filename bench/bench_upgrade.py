"""Rolling upgrade of a fleet on the local engine: in batches against all at once, side by side.

    python bench/bench_upgrade.py --nodes 50 --batch 10   # make bench runs this
    python bench/bench_upgrade.py --nodes 6 --batch 2     # a quick look

A fleet of N nodes is provisioned on the reference image (knarr-cluster-node:latest; not timed), then:

  batches       playbooks/provision.yml with every node on a variant of the image (the reference with a label
                added, built here from it: nothing is pulled) and knarr_node_upgrade_batch=B
  all at once   the same back to the reference image with knarr_node_upgrade_batch=100%

Each runs with knarr_node_parallelism as large as what it recreates at once (B, then N), so that "all at once" is
what it says.

During each, a poller probes every node with the signed echo (the registry's provisioner identity), round after
round, and the fewest nodes answering in one round is printed beside the time: the price of availability. After
each, every node is checked (not timed): online, on the wanted image, its node id unchanged. Then the fleet is
decommissioned. Its own network (fenrir-ubench, 172.29.0.0/24) and labels (ub*): nothing else on the engine is
touched. No timed assertion: the numbers are printed, and written to bench/results/upgrade.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import benchenv  # noqa: E402  (bench/, beside this script)

REPO = benchenv.use_project_venv(__file__)

import docker  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import probe_once  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_wire import Identity  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import NODE_OPTIONS  # noqa: E402
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry  # noqa: E402

NETWORK = "fenrir-ubench"
SUBNET = "172.29.0.0/24"
GATEWAY = "172.29.0.1"
PREFIX = "ub"
REFERENCE = NODE_OPTIONS["image"]["default"]
VARIANT = "knarr-cluster-node:bench-variant"
PORT = NODE_OPTIONS["port"]["default"]


def log(msg):
    print("[bench-upgrade %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class Poller(threading.Thread):
    """Counts, round after round, the nodes that answer the signed echo."""

    def __init__(self, registry):
        super().__init__(daemon=True)
        with Registry(registry) as reg:
            self.identity = Identity(reg.provisioner_seed(create=False))
            self.nodes = [(r["ip"], r["node_id"]) for r in reg.all(include_destroyed=False)]
        self.counts = []
        self.done = threading.Event()

    def alive(self, node):
        for dummy in range(2):
            try:
                probe_once(node[0], PORT, node[1], timeout=3.0, identity=self.identity)
                return True
            except Exception:  # pylint: disable=broad-except
                pass
        return False

    def run(self):
        with ThreadPoolExecutor(max_workers=min(64, len(self.nodes))) as pool:
            while not self.done.is_set():
                self.counts.append(sum(pool.map(self.alive, self.nodes)))
                time.sleep(0.1)

    def stop(self):
        self.done.set()
        self.join(120)
        return min(self.counts) if self.counts else None


class BenchFleet:
    def __init__(self, work, nodes):
        self.work = Path(work)
        self.registry = str(self.work / "state" / "fleet.db")
        self.inventory = self.work / "inventory"
        (self.inventory / "group_vars").mkdir(parents=True)
        (self.inventory / "group_vars" / "all.yml").write_text(
            "---\nknarr_node_registry: %s\nknarr_node_network: %s\nknarr_node_subnet: %s\nknarr_node_gateway: %s\n"
            "knarr_node_pool_start: 172.29.0.10\nknarr_node_pool_end: 172.29.0.249\n"
            "knarr_node_provisioner_endpoint: %s:9040\nknarr_node_boot_timeout: 60\n"
            % (json.dumps(self.registry), NETWORK, SUBNET, GATEWAY, GATEWAY))
        self.labels = ["%s%03d" % (PREFIX, i + 1) for i in range(nodes)]

    def hosts(self, image):
        lines = ["---", "all:", "  children:", "    knarr_nodes:", "      vars:", "        ansible_connection: local",
                 "        ansible_python_interpreter: \"{{ ansible_playbook_python }}\"", "      hosts:"]
        for label in self.labels:
            lines += ["        bench-%s:" % label, "          knarr_node_label: %s" % label,
                      "          knarr_node_image: %s" % json.dumps(image)]
        (self.inventory / "hosts.yml").write_text("\n".join(lines) + "\n")

    def play(self, playbook, *args):
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.inventory),
               str(REPO / "playbooks" / playbook)] + list(args)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - t0
        (self.work / ("%s-%d.log" % (playbook, int(t0)))).write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise SystemExit("%s failed (rc %d):\n%s" % (playbook, proc.returncode, proc.stdout[-3000:]))
        return wall

    def records(self):
        with Registry(self.registry) as reg:
            return {r["label"]: r for r in reg.all(include_destroyed=False)}


def check(client, fleet, image, ids):
    """Every node online on ``image`` with its node id; returns problems (strings)."""
    problems = []
    want = client.images.get(image).id
    for label, r in fleet.records().items():
        info = client.api.inspect_container("fenrir-" + label)
        if r["status"] != "online" or info["Image"] != want or r["node_id"] != ids[label] or r["image_id"] != want:
            kept = "kept" if r["node_id"] == ids[label] else "CHANGED"
            problems.append("%s: status %s, image %s, node id %s" % (label, r["status"], info["Image"][:19], kept))
    return problems


def upgrade(client, fleet, image, batch, parallelism, ids):
    fleet.hosts(image)
    poller = Poller(fleet.registry)
    poller.start()
    wall = fleet.play("provision.yml", "-e", "knarr_node_upgrade_batch=%s" % batch,
                      "-e", "knarr_node_parallelism=%d" % parallelism)
    fewest = poller.stop()
    return dict(wall_s=round(wall, 1), min_answering=fewest, rounds=len(poller.counts), parallelism=parallelism,
                problems=check(client, fleet, image, ids))


def cleanup(client):
    """Remove the bench's containers (also ones kept aside, <name>.previous) and its network; never raises."""
    for c in client.containers.list(all=True, filters={"label": "fenrir.fleet.role=knarr-node"}, ignore_removed=True):
        if c.labels.get("fenrir.fleet.label", "").startswith(PREFIX) and c.name.startswith("fenrir-" + PREFIX):
            try:
                c.remove(force=True)
            except docker.errors.APIError as exc:
                log("leaving %s: %s" % (c.name, exc))
    for n in client.networks.list(names=[NETWORK]):
        if n.name != NETWORK:
            continue
        try:
            for cid in client.api.inspect_network(n.id).get("Containers") or {}:
                client.api.remove_container(cid, force=True)
            n.remove()
        except docker.errors.APIError as exc:
            log("leaving network %s: %s" % (NETWORK, exc))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--results", default=str(REPO / "bench" / "results" / "upgrade.json"))
    args = ap.parse_args(argv)
    client = docker.from_env()
    client.images.get(REFERENCE)  # scripts/ensure-node-image; never pulled
    client.images.build(fileobj=io.BytesIO(("FROM %s\nLABEL fenrir.bench.variant=1\n" % REFERENCE).encode()),
                        tag=VARIANT, rm=True, pull=False)
    cleanup(client)
    out = dict(nodes=args.nodes, batch=args.batch)
    with tempfile.TemporaryDirectory(prefix="fenrir-ubench-") as work:
        fleet = BenchFleet(work, args.nodes)
        try:
            fleet.hosts(REFERENCE)
            log("provisioning %d nodes on %s (not timed)" % (args.nodes, REFERENCE))
            fleet.play("provision.yml")
            ids = {label: r["node_id"] for label, r in fleet.records().items()}
            log("upgrade to %s in batches of %d" % (VARIANT, args.batch))
            # Each with as many nodes worked on at once as it recreates at once: a batch, or the whole fleet.
            out["batches"] = upgrade(client, fleet, VARIANT, args.batch, args.batch, ids)
            log("back to %s, all at once" % REFERENCE)
            out["all_at_once"] = upgrade(client, fleet, REFERENCE, "100%", args.nodes, ids)
            fleet.play("decommission.yml")
        finally:
            cleanup(client)
            try:
                client.images.remove(VARIANT)
            except docker.errors.APIError:
                pass
    b, a = out["batches"], out["all_at_once"]
    print()
    print("Rolling upgrade of %d nodes (local engine)" % args.nodes)
    print("%-22s %12s %12s %16s %10s" % ("", "parallelism", "wall (s)", "min answering", "problems"))
    for name, row in (("batches of %d" % args.batch, b), ("all at once", a)):
        print("%-22s %12d %12.1f %11s/%-4d %10d" % (name, row["parallelism"], row["wall_s"], row["min_answering"],
                                                    args.nodes, len(row["problems"])))
    print("batches / all at once: %.2fx the time; %s vs %s nodes answering at the worst moment"
          % (b["wall_s"] / a["wall_s"], b["min_answering"], a["min_answering"]))
    for problem in b["problems"] + a["problems"]:
        print("PROBLEM: %s" % problem)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(out, indent=2) + "\n")
    return 1 if b["problems"] or a["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
