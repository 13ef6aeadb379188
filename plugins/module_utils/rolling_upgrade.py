# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rolling upgrades: the nodes whose container must be made anew (a new image, or any setting that forces a
recreate) are recreated in batches, each batch proven alive before the next starts.

A batch whose nodes fail their proof of life is put back: each failed node gets its previous container back (the
one the run stopped and kept aside as ``<name>.previous``: its previous image, its node.db) and must prove itself
alive again; the run stops there.  Nodes of earlier batches stay upgraded, unless ``upgrade_rollback`` is ``all``:
then they are recreated on their previous image, their node.db carried over, batch by batch, last batch first.

The batch arithmetic and the plan are pure functions (unit-tested); ``run_batches`` drives Reconcilers (one per
engine) through a ``rec_of(work)`` callable, so that a batch spans every Docker host of the fleet.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.fenrir.fleet.plugins.module_utils import checkpoints
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError

DEFAULT_BATCH = "25%"
ROLLBACK_CHOICES = ("batch", "all")


def batch_size(value, affected):
    """How many nodes are recreated at once, of ``affected`` nodes: ``value`` is a count (``3``) or a percentage
    of the affected nodes (``"25%"``, rounded up), at least 1 and at most ``affected``.  0 when nothing is affected."""
    text = str(DEFAULT_BATCH if value is None else value).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 < percent <= 100 or math.isnan(percent):
                raise ValueError(text)
            size = int(math.ceil(affected * percent / 100.0 - 1e-9))
        else:
            size = int(text)
            if size < 1:
                raise ValueError(text)
    except ValueError:
        raise FleetError("%r is neither a count of nodes (1 or more) nor a percentage of the nodes to recreate "
                         "(like '25%%', more than 0 and at most 100)" % (value,), field="upgrade_batch")
    if affected <= 0:
        return 0
    return max(1, min(size, affected))


def _spread(works):
    """The works in an order that spreads each batch over the Docker hosts: one node of each host in turn."""
    by_engine = {}
    for w in sorted(works, key=lambda w: w.label):
        by_engine.setdefault(getattr(w, "engine", None) or "", []).append(w)
    engines = sorted(by_engine)
    out = []
    while any(by_engine.values()):
        for e in engines:
            if by_engine[e]:
                out.append(by_engine[e].pop(0))
    return out


def split_batches(works, size):
    """The affected works in batches of ``size`` (the last may be smaller), spread over hosts."""
    ordered = _spread(works)
    if not ordered:
        return []
    size = max(1, int(size))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def plan(batches):
    """The plan: per node, its batch (from 1), the image it runs and the image it gets, why it is recreated."""
    out = []
    for number, batch in enumerate(batches, 1):
        for w in batch:
            up = w.upgrade
            out.append(dict(label=w.label, batch=number, from_image=up["from_image"], to_image=up["to_image"],
                            from_image_id=up["from_image_id"], to_image_id=up["to_image_id"],
                            docker_host=getattr(w, "engine", None), reasons=list(up["reasons"])))
    return out


def _short(image_id):
    return (image_id or "").split(":", 1)[-1][:12] or "?"


def describe_image(ref, image_id):
    """``ref (id)``, the id shortened."""
    return "%s (%s)" % (ref, _short(image_id))


def _parallel(fn, works, parallelism):
    if not works:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(works)))) as pool:
        list(pool.map(fn, works))


def run_batches(affected, rec_of, batch, rollback="batch", check_mode=False, parallelism=8):
    """Recreate ``affected`` works (each with ``work.upgrade`` set by ``Reconciler.plan_recreate``) in batches.

    Returns the report: batch size, the plan, who was upgraded, rolled back, reverted (``rollback: all``) or held
    back (not touched: a batch before them failed), and the failed batch's number."""
    if rollback not in ROLLBACK_CHOICES:
        raise FleetError("%r is not one of %s" % (rollback, ", ".join(ROLLBACK_CHOICES)), field="upgrade_rollback")
    size = batch_size(batch, len(affected))
    batches = split_batches(affected, size)
    for number, members in enumerate(batches, 1):
        for w in members:
            w.batch = number
    report = dict(batch_size=size, batches=len(batches), rollback=rollback, plan=plan(batches), upgraded=[],
                  rolled_back=[], reverted=[], held_back=[], failed_batch=None)
    if not batches:
        return report
    if check_mode:
        _parallel(lambda w: rec_of(w).upgrade_one(w), affected, parallelism)
        return report
    done = []
    for number, members in enumerate(batches, 1):
        _parallel(lambda w: rec_of(w).upgrade_one(w), members, parallelism)
        _parallel(lambda w: rec_of(w).prove_upgrade(w), [w for w in members if not w.failed], parallelism)
        failed = [w for w in members if w.failed]
        ok = [w for w in members if not w.failed]
        report["upgraded"].extend(w.label for w in ok)
        done.extend(ok)
        if failed:
            report["failed_batch"] = number
            _parallel(lambda w: rec_of(w).roll_back(w), failed, parallelism)
            report["rolled_back"] = [w.label for w in failed]
            for later in batches[number:]:
                for w in later:
                    w.held_back = True
                    report["held_back"].append(w.label)
            if rollback == "all":
                # Every node this run upgraded goes back: the failed batch's others first, then the earlier
                # batches, last first -- one batch at a time, as they came.
                for group in [ok] + [list(b) for b in reversed(batches[:number - 1])]:
                    _parallel(lambda w: rec_of(w).revert(w), group, parallelism)
                    report["reverted"].extend(w.label for w in group if not w.failed)
                report["upgraded"] = [w.label for w in done if w.label not in report["reverted"]]
            _explain(failed, report)
            break
        checkpoints.reached("upgrade_batch_proven")
    return report


def _explain(failed, report):
    """Each failed node's reason: its old and new image, what it answered, and what was done about it."""
    for w in failed:
        up = w.upgrade
        w.reason = "upgrade in batch %d from %s to %s failed: %s; %s" % (
            w.batch, describe_image(up["from_image"], up["from_image_id"]),
            describe_image(up["to_image"], up["to_image_id"]), w.upgrade_answer or "no answer",
            w.rollback_note or "not rolled back")


def summary(report):
    """One sentence on a failed upgrade, for the module's message."""
    if not report or not report.get("failed_batch"):
        return None
    parts = ["upgrade stopped at batch %d of %d (batch size %d)"
             % (report["failed_batch"], report["batches"], report["batch_size"])]
    parts.append("rolled back: %s" % ", ".join(report["rolled_back"]))
    if report["upgraded"]:
        parts.append("upgraded in earlier batches and staying upgraded: %s" % ", ".join(report["upgraded"]))
    if report["reverted"]:
        parts.append("reverted to their previous image (upgrade_rollback=all): %s" % ", ".join(report["reverted"]))
    if report["held_back"]:
        parts.append("not upgraded (later batches): %s" % ", ".join(report["held_back"]))
    return "; ".join(parts)
