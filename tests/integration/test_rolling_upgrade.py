"""Rolling upgrades against the real engine: a fleet moved to a second image in batches while a poller counts the
nodes answering the signed echo, an upgrade to an image that never answers rolled back with every identity intact,
a run killed (SIGKILL) in the middle of a batch then converging, and the plan of check mode.

The fleet lives apart from the other integration tests: network fenrir-uptest (172.20.0.0/24), labels up-*. The
images are local: a variant of the reference image (a label added) and a broken one (it only sleeps), built from it
without pulling anything.
"""
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import CLIENT, Fleet

from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_probe import probe_once
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_wire import Identity
from ansible_collections.fenrir.fleet.plugins.module_utils.node_spec import NODE_OPTIONS
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry

NETWORK = "fenrir-uptest"
SUBNET = "172.20.0.0/24"
PREFIX = "up-"
REFERENCE = NODE_OPTIONS["image"]["default"]  # scripts/ensure-node-image
VARIANT = "knarr-cluster-node:up-variant"
BROKEN = "knarr-cluster-node:up-broken"
TAGGED = "knarr-cluster-node:up-tagged"  # a second name of the reference image (docker tag): the same image id
PORT = NODE_OPTIONS["port"]["default"]
DOCKERFILES = {
    VARIANT: "FROM %s\nLABEL fenrir.test.variant=up\n" % REFERENCE,
    BROKEN: "FROM %s\nLABEL fenrir.test.variant=broken\nENTRYPOINT [\"sleep\", \"infinity\"]\nCMD []\n" % REFERENCE,
}


@pytest.fixture(scope="module")
def images():
    """The variant and broken images, built from the reference image (local: FROM it, never pulled); their ids."""
    for tag, dockerfile in DOCKERFILES.items():
        CLIENT.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True, pull=False)
    CLIENT.images.get(REFERENCE).tag(TAGGED)
    ids = {tag: CLIENT.images.get(tag).id for tag in [REFERENCE] + list(DOCKERFILES)}
    assert len(set(ids.values())) == 3, ids
    ids[TAGGED] = ids[REFERENCE]
    yield ids
    for tag in list(DOCKERFILES) + [TAGGED]:
        try:
            CLIENT.images.remove(tag, noprune=False)
        except Exception:  # still used by a container another run left: the next run's clean-up takes it
            pass


@pytest.fixture(params=["sqlite"])
def upfleet(request, tmp_path):
    """The test's fleet; with the parameter ``postgresql`` its registry is a PostgreSQL schema of its own."""
    registry = request.getfixturevalue("pg_location") if request.param == "postgresql" else None
    f = Fleet(str(tmp_path), registry=registry, network=NETWORK, subnet=SUBNET, prefix=PREFIX)
    f.clean()
    yield f
    f.clean()


def hosts_on(fleet, images_by_name):
    """{label: host vars} for nodes named by letter, each on the given image."""
    return {fleet.label(name): {"knarr_node_image": image} for name, image in images_by_name.items()}


def containers_by_name(fleet):
    """Every container of the test fleet, by name (a container kept aside as <name>.previous is listed too)."""
    out = {}
    for c in CLIENT.containers.list(all=True, filters={"label": "fenrir.fleet.role=knarr-node"}, ignore_removed=True):
        if c.labels.get("fenrir.fleet.label", "").startswith(fleet.prefix):
            out[c.name] = dict(id=c.id, image_id=c.attrs["Image"], status=c.status)
    return out


def node_ids(fleet):
    return {label: r["node_id"] for label, r in fleet.rows().items()}


def assert_fleet_on(fleet, wanted, ids, images):
    """Every node online, on the image wanted for it (its registry record says so too), with its identity."""
    rows, containers = fleet.rows(), containers_by_name(fleet)
    assert not [n for n in containers if n.endswith(".previous")], containers
    for label, image in wanted.items():
        row, container = rows[label], containers["fenrir-" + label]
        assert row["status"] == "online", row
        assert container["status"] == "running" and container["id"] == row["container_id"], (container, row)
        assert container["image_id"] == images[image], (label, container)
        assert (row["image"], row["image_id"]) == (image, images[image]), row
        assert row["node_id"] == ids[label], "node %s changed its identity" % label


class Poller(threading.Thread):
    """Probes every node with the signed echo (the provisioner's identity) round after round, counting the nodes
    that answer; ``minimum`` is the fewest seen in one round."""

    def __init__(self, fleet):
        super().__init__(daemon=True)
        with Registry(fleet.registry) as reg:
            self.identity = Identity(reg.provisioner_seed(create=False))
        self.nodes = [(r["ip"], r["node_id"]) for r in fleet.rows().values() if r["status"] == "online"]
        self.counts = []
        self.done = threading.Event()
        self.error = None

    def alive(self, node):
        for dummy in range(2):  # one retry: a probe lost to a busy machine is not a node down
            try:
                probe_once(node[0], PORT, node[1], timeout=3.0, identity=self.identity)
                return True
            except Exception:
                pass
        return False

    def round(self, pool):
        return sum(pool.map(self.alive, self.nodes))

    def run(self):
        try:
            with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
                while not self.done.is_set():
                    self.counts.append(self.round(pool))
                    time.sleep(0.1)
        except Exception as exc:  # reported by stop()
            self.error = exc

    def start_counting(self):
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            first = self.round(pool)
        assert first == len(self.nodes), "the poller sees %d of %d nodes before the upgrade" % (first, len(self.nodes))
        self.start()
        return self

    def stop(self):
        self.done.set()
        self.join(60)
        assert self.error is None, self.error
        assert len(self.counts) >= 3, self.counts
        return min(self.counts)


def test_an_upgrade_in_batches_keeps_all_but_one_batch_answering(upfleet, images):
    fleet = upfleet
    letters = "abcdef"
    fleet.set_hosts(hosts_on(fleet, {n: REFERENCE for n in letters}))
    fleet.play("provision.yml")
    ids = node_ids(fleet)
    assert_fleet_on(fleet, {fleet.label(n): REFERENCE for n in letters}, ids, images)

    # The plan: which nodes, in which batch, from which image to which; nothing changes.
    fleet.set_hosts(hosts_on(fleet, {n: VARIANT for n in letters}))
    before = fleet.snapshot()
    planned = fleet.play("provision.yml", "--check", "--diff", "-e", "knarr_node_upgrade_batch=2")
    step = planned.task_result("made and started")
    plan = step["upgrade"]["plan"]
    assert sorted(p["label"] for p in plan) == sorted(ids) and step["upgrade"]["batch_size"] == 2
    assert sorted(p["batch"] for p in plan) == [1, 1, 2, 2, 3, 3]
    assert {(p["from_image"], p["to_image"]) for p in plan} == {(REFERENCE, VARIANT)}
    after = step["diff"]["after"]  # the diff names each node's batch and images
    assert {after[p["label"]]["upgrade"]["batch"] for p in plan} == {1, 2, 3}
    assert {after[p["label"]]["upgrade"]["to_image"] for p in plan} == {VARIANT}
    assert fleet.snapshot() == before

    # The upgrade, counted from outside: at most one batch (2 of 6) down at any time.
    poller = Poller(fleet).start_counting()
    result = fleet.play("provision.yml", "-e", "knarr_node_upgrade_batch=2")
    fewest = poller.stop()
    report = result.task_result("made and started")["upgrade"]
    assert report["batches"] == 3 and sorted(report["upgraded"]) == sorted(ids) and report["failed_batch"] is None
    assert fewest >= len(letters) - 2, poller.counts
    assert fewest < len(letters), "the poller never saw a node down: it measured nothing (%s)" % poller.counts
    assert_fleet_on(fleet, {fleet.label(n): VARIANT for n in letters}, ids, images)
    rows = fleet.rows()
    assert all((r["previous_image"], r["previous_image_id"]) == (REFERENCE, images[REFERENCE]) for r in rows.values())
    audited = [e for e in fleet.sql("SELECT * FROM audit") if images[VARIANT] in (e["after"] or "")]
    assert len({e["label"] for e in audited}) == len(letters), audited  # every node's new image is audited

    # The status table shows each node's image and how many nodes run each image.
    status = fleet.play("status.yml")
    table = status.task_result("Show the fleet")["msg"]
    heading = "Images (nodes per image): %s x%d" % (VARIANT, len(letters))
    assert heading in table, table
    shown = {line.split()[0]: line.split()[1:] for line in table[table.index(heading) + 2:][:6]}
    assert shown == {label: [VARIANT, "(was", REFERENCE + ")"] for label in ids}, table
    assert status.task_result("Compare the registry")["images"] == {VARIANT: len(letters)}

    # And back, half the fleet at a time (a percentage), unaffected nodes untouched: f stays on the variant.
    back = {n: REFERENCE for n in "abcde"}
    back["f"] = VARIANT
    fleet.set_hosts(hosts_on(fleet, back))
    untouched = containers_by_name(fleet)["fenrir-" + fleet.label("f")]["id"]
    poller = Poller(fleet).start_counting()
    result = fleet.play("provision.yml", "-e", "knarr_node_upgrade_batch=50%")
    fewest = poller.stop()
    report = result.task_result("made and started")["upgrade"]
    assert report["batch_size"] == 3 and report["batches"] == 2, report  # 50% of the 5 affected, rounded up
    assert fewest >= (5 - 3) + 1, poller.counts
    assert_fleet_on(fleet, {fleet.label(n): image for n, image in back.items()}, ids, images)
    assert containers_by_name(fleet)["fenrir-" + fleet.label("f")]["id"] == untouched
    assert fleet.play("provision.yml").changed() == 0


def test_an_upgrade_to_an_image_that_never_answers_is_rolled_back(upfleet, images):
    fleet = upfleet
    fleet.set_hosts(hosts_on(fleet, {n: REFERENCE for n in "abcd"}))
    fleet.play("provision.yml")
    ids = node_ids(fleet)
    a, b, c, d = (fleet.label(n) for n in "abcd")
    write = ("import sqlite3; x = sqlite3.connect('/opt/knarr/node.db'); "
             "x.execute('CREATE TABLE peers (id TEXT)'); x.execute(\"INSERT INTO peers VALUES ('p1')\"); x.commit()")
    assert CLIENT.containers.get("fenrir-" + c).exec_run(["python3", "-c", write]).exit_code == 0

    # a, b to the variant (batch 1, answers), c, d to the broken image (batch 2, never answers): rolled back.
    fleet.set_hosts(hosts_on(fleet, {"a": VARIANT, "b": VARIANT, "c": BROKEN, "d": BROKEN}))
    failed = fleet.play("provision.yml", "-e", '{"knarr_node_upgrade_batch": 2, "knarr_node_boot_timeout": 8}',
                        check=False)  # the batch as a number this time
    assert failed.rc != 0
    step = failed.task_result("made and started")
    report = step["upgrade"]
    assert report["failed_batch"] == 2 and sorted(report["rolled_back"]) == [c, d], report
    assert sorted(report["upgraded"]) == [a, b] and report["held_back"] == [] and report["reverted"] == []
    errors = failed.errors()
    for label in (c, d):
        reason = {n["label"]: n for n in step["nodes"]}[label]["reason"]
        assert REFERENCE in reason and BROKEN in reason and "not alive" in reason and "alive again" in reason, reason
        assert label in errors
    assert "staying upgraded: %s, %s" % (a, b) in step["msg"], step["msg"]
    assert_fleet_on(fleet, {a: VARIANT, b: VARIANT, c: REFERENCE, d: REFERENCE}, ids, images)
    assert BROKEN in fleet.rows()[c]["reason"]
    read = "import sqlite3; print(sqlite3.connect('/opt/knarr/node.db').execute('SELECT id FROM peers').fetchall())"
    out = CLIENT.containers.get("fenrir-" + c).exec_run(["python3", "-c", read]).output.decode().strip()
    assert out == "[('p1',)]", out  # its data came back with it

    # upgrade_rollback=all: a, b back to the reference (batch 1, answers), c, d broken again (batch 2): everyone
    # ends where they were, a and b recreated on the variant they ran before.
    fleet.set_hosts(hosts_on(fleet, {"a": REFERENCE, "b": REFERENCE, "c": BROKEN, "d": BROKEN}))
    failed = fleet.play("provision.yml", "-e", "knarr_node_upgrade_batch=2", "-e", "knarr_node_boot_timeout=8",
                        "-e", "knarr_node_upgrade_rollback=all", check=False)
    assert failed.rc != 0
    report = failed.task_result("made and started")["upgrade"]
    assert sorted(report["reverted"]) == [a, b] and sorted(report["rolled_back"]) == [c, d], report
    assert report["upgraded"] == []
    assert_fleet_on(fleet, {a: VARIANT, b: VARIANT, c: REFERENCE, d: REFERENCE}, ids, images)


# after_set_aside: the old container renamed <name>.previous, no container under the node's name; after_create: the
# new container made and not started (half-made). On PostgreSQL once (the registry's image columns there too).
KILLS = [("sqlite", "after_set_aside"), ("sqlite", "after_create"), ("postgresql", "after_create")]


@pytest.mark.parametrize("upfleet,point", KILLS, indirect=["upfleet"], ids=["%s-%s" % k for k in KILLS])
def test_a_run_killed_in_the_middle_of_a_batch_converges(upfleet, images, point):
    fleet = upfleet
    fleet.set_hosts(hosts_on(fleet, {n: REFERENCE for n in "abcd"}))
    fleet.play("provision.yml")
    ids = node_ids(fleet)
    write = ("import sqlite3; x = sqlite3.connect('/opt/knarr/node.db'); "
             "x.execute('CREATE TABLE peers (id TEXT)'); x.execute(\"INSERT INTO peers VALUES ('p1')\"); x.commit()")
    for label in ids:
        assert CLIENT.containers.get("fenrir-" + label).exec_run(["python3", "-c", write]).exit_code == 0

    fleet.set_hosts(hosts_on(fleet, {n: VARIANT for n in "abcd"}))
    killed = fleet.play("provision.yml", "-e", "knarr_node_upgrade_batch=2", env={"FENRIR_FAULT_POINT": point},
                        check=False)
    assert killed.rc != 0 and "A worker was found in a dead state" in killed.stdout + killed.stderr, killed.errors()
    left = containers_by_name(fleet)
    assert [n for n in left if n.endswith(".previous")], left  # the half-made state the next run must handle

    fleet.play("provision.yml", "-e", "knarr_node_upgrade_batch=2")
    assert_fleet_on(fleet, {label: VARIANT for label in ids}, ids, images)
    read = "import sqlite3; print(sqlite3.connect('/opt/knarr/node.db').execute('SELECT id FROM peers').fetchall())"
    for label in ids:
        out = CLIENT.containers.get("fenrir-" + label).exec_run(["python3", "-c", read]).output.decode().strip()
        assert out == "[('p1',)]", (label, out)  # no node lost its data
    assert fleet.play("provision.yml").changed() == 0


def test_a_second_name_of_the_same_image_is_rolled_out_too(upfleet, images):
    """A docker tag of the image the nodes run (same image id, another reference): the nodes get containers made
    from that reference, one at a time here, and the registry names it."""
    fleet = upfleet
    fleet.set_hosts(hosts_on(fleet, {n: REFERENCE for n in "abc"}))
    fleet.play("provision.yml")
    ids = node_ids(fleet)
    fleet.set_hosts(hosts_on(fleet, {n: TAGGED for n in "abc"}))
    result = fleet.play("provision.yml", "-e", "knarr_node_upgrade_batch=1")
    report = result.task_result("made and started")["upgrade"]
    assert report["batches"] == 3 and sorted(report["upgraded"]) == sorted(ids), report
    assert report["plan"][0]["reasons"][0] == "image %s -> %s" % (REFERENCE, TAGGED), report["plan"]
    assert_fleet_on(fleet, {label: TAGGED for label in ids}, ids, images)
    assert all(CLIENT.containers.get("fenrir-" + label).attrs["Config"]["Image"] == TAGGED for label in ids)
