"""Rolling upgrades without an engine: the batch arithmetic, the batches and the plan, and the order of work of
run_batches (upgrade, prove, roll back, hold back, revert) with a stand-in Reconciler."""
from types import SimpleNamespace

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import rolling_upgrade as ru
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError


@pytest.mark.parametrize("value,affected,size", [
    ("25%", 1, 1), ("25%", 2, 1), ("25%", 4, 1), ("25%", 5, 2), ("25%", 50, 13), (None, 8, 2),
    ("10", 50, 10), (10, 50, 10), ("10", 3, 3), ("1", 6, 1), ("50%", 5, 3), ("100%", 7, 7), ("0.5%", 10, 1),
    (" 20% ", 50, 10), ("25%", 0, 0),
])
def test_batch_size(value, affected, size):
    assert ru.batch_size(value, affected) == size


@pytest.mark.parametrize("affected", range(2, 60))
def test_the_default_never_recreates_the_whole_fleet_at_once(affected):
    assert 1 <= ru.batch_size(None, affected) < affected


@pytest.mark.parametrize("value", ["0", "-1", "0%", "101%", "x", "%", "ten", "nan%", "2.5"])
def test_bad_batch_sizes_are_refused_naming_the_setting(value):
    with pytest.raises(FleetError) as err:
        ru.batch_size(value, 10)
    assert "upgrade_batch" in str(err.value) and repr(value) in str(err.value)


def work(label, engine=None, **kw):
    w = SimpleNamespace(label=label, engine=engine, failed=False, reason=None, batch=None, held_back=False,
                        upgrade_answer=None, rollback_note=None, actions=[],
                        upgrade=dict(reasons=["image_id sha256:aaa -> sha256:bbb"], from_image="knarr:1",
                                     from_image_id="sha256:aaa", to_image="knarr:2", to_image_id="sha256:bbb"))
    w.__dict__.update(kw)
    return w


def test_batches_take_a_node_of_each_host_in_turn():
    works = [work("a1", "h1"), work("a2", "h1"), work("a3", "h1"), work("b1", "h2"), work("b2", "h2"),
             work("c1", None)]
    batches = ru.split_batches(works, 2)
    assert [[w.label for w in b] for b in batches] == [["c1", "a1"], ["b1", "a2"], ["b2", "a3"]]
    assert ru.split_batches([], 3) == []


def test_the_plan_names_batch_and_images_of_every_node():
    batches = ru.split_batches([work("a"), work("b"), work("c")], 2)
    plan = ru.plan(batches)
    assert [(p["label"], p["batch"], p["from_image"], p["to_image"]) for p in plan] == [
        ("a", 1, "knarr:1", "knarr:2"), ("b", 1, "knarr:1", "knarr:2"), ("c", 2, "knarr:1", "knarr:2")]
    assert plan[0]["reasons"] == ["image_id sha256:aaa -> sha256:bbb"]


class FakeRec:
    """Records what run_batches asks of it; nodes in ``broken`` fail their proof of life."""

    def __init__(self, broken=()):
        self.broken = set(broken)
        self.calls = []

    def upgrade_one(self, w):
        self.calls.append(("upgrade", w.label))

    def prove_upgrade(self, w):
        self.calls.append(("prove", w.label))
        if w.label in self.broken:
            w.failed, w.reason = True, "node %s is not alive: timed out" % w.label

    def roll_back(self, w):
        self.calls.append(("roll_back", w.label))
        w.upgrade_answer = w.reason
        w.rollback_note = "rolled back to its previous container and alive again"

    def revert(self, w):
        self.calls.append(("revert", w.label))


def test_every_batch_is_proven_before_the_next_starts():
    rec = FakeRec()
    works = [work(x) for x in "abcde"]
    report = ru.run_batches(works, lambda w: rec, 2)
    assert report["batches"] == 3 and report["upgraded"] == list("abcde") and report["failed_batch"] is None
    order = list(rec.calls)
    # batch 1 (a, b) upgraded and proven before anything of batch 2 happens
    last_of_1 = max(order.index(("prove", "a")), order.index(("prove", "b")))
    first_of_2 = min(order.index(("upgrade", "c")), order.index(("upgrade", "d")))
    assert last_of_1 < first_of_2
    assert [w.batch for w in works] == [1, 1, 2, 2, 3]
    assert ru.summary(report) is None


def test_a_failed_batch_is_rolled_back_later_ones_held_back_earlier_ones_stay():
    rec = FakeRec(broken={"c"})
    works = [work(x) for x in "abcdef"]
    report = ru.run_batches(works, lambda w: rec, 2)
    assert report["failed_batch"] == 2 and report["rolled_back"] == ["c"] and report["upgraded"] == ["a", "b", "d"]
    assert report["held_back"] == ["e", "f"] and report["reverted"] == []
    assert ("upgrade", "e") not in rec.calls and ("roll_back", "d") not in rec.calls
    c = works[2]
    assert c.reason == ("upgrade in batch 2 from knarr:1 (aaa) to knarr:2 (bbb) failed: node c is not alive: timed "
                        "out; rolled back to its previous container and alive again")
    said = ru.summary(report)
    assert "batch 2 of 3" in said and "staying upgraded: a, b, d" in said and "not upgraded (later batches): e, f" in said


def test_rollback_all_reverts_earlier_batches_last_first():
    rec = FakeRec(broken={"e"})
    works = [work(x) for x in "abcdef"]
    report = ru.run_batches(works, lambda w: rec, 2, rollback="all")
    assert report["reverted"] == ["f", "c", "d", "a", "b"] and report["upgraded"] == []
    reverts = [c[1] for c in rec.calls if c[0] == "revert"]
    assert reverts[0] == "f" and sorted(reverts[1:3]) == ["c", "d"] and sorted(reverts[3:]) == ["a", "b"]
    assert "reverted to their previous image" in ru.summary(report)


def test_check_mode_plans_every_batch_and_proves_nothing():
    rec = FakeRec(broken={"a"})
    works = [work(x) for x in "abc"]
    report = ru.run_batches(works, lambda w: rec, "50%", check_mode=True)
    assert report["batch_size"] == 2 and [p["batch"] for p in report["plan"]] == [1, 1, 2]
    assert sorted(rec.calls) == [("upgrade", "a"), ("upgrade", "b"), ("upgrade", "c")]


def test_an_unknown_rollback_is_refused():
    with pytest.raises(FleetError) as err:
        ru.run_batches([work("a")], lambda w: FakeRec(), 1, rollback="some")
    assert "upgrade_rollback" in str(err.value)
