# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit chain: every change to any record appends an entry in the same transaction.

An entry (height, time, actor, action, kind of record, label, before, after, previous entry's hash) carries
``hash`` = HMAC-SHA256 over its canonical form with the registry's *audit key*: 32 random bytes made with the
registry, kept sealed (Fernet) in ``registry_meta`` -- so whoever can write the database but lacks the
registry key cannot recompute a hash, and a reader of the database (the inventory) needs no key at all.

Entries of a chain written before schema 5 (public SHA-256, :func:`entry_hash`) stay as they were: the
migration appends a keyed ``rekey`` entry that names how many there were and the hash of the last one, and
the keyed anchor covers that count, so an edit of an old entry shows at the first entry after it that is
keyed.  The anchor -- ``registry_meta.audit_head``: the newest entry's height and hash, with an HMAC -- is
kept outside the rows it protects and written with every commit: removing entries from the tail (and the
rows they describe) shows as a trail that ends before its anchor.  (Rolling the whole database back to an
older copy, anchor included, cannot be seen from inside it: keep the ``head`` that :meth:`Registry.verify`
returns somewhere else -- an AWX artifact, a log -- and compare.)
"""

from __future__ import annotations

import hashlib
import hmac
import json

from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import (
    GENESIS_HASH, KINDS, audit_view, canonical, differing, problem)


def entry_hash(height, ts, actor, action, label, before, after, prev_hash):
    """The public SHA-256 of a schema-4 entry (verifies the unkeyed part of a migrated chain)."""
    payload = canonical(dict(height=height, ts=repr(float(ts)), actor=actor, action=action, label=label,
                             before=before, after=after, prev_hash=prev_hash))
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def keyed_hash(key, height, ts, actor, action, kind, label, before, after, prev_hash):
    payload = canonical(dict(v=5, height=height, ts=repr(float(ts)), actor=actor, action=action, kind=kind,
                             label=label, before=before, after=after, prev_hash=prev_hash))
    return hmac.new(key, payload.encode("ascii"), hashlib.sha256).hexdigest()


def anchor(key, height, digest, legacy):
    body = dict(height=height, hash=digest, legacy=legacy)
    body["mac"] = hmac.new(key, canonical(dict(anchor=body)).encode("ascii"), hashlib.sha256).hexdigest()
    return canonical(body)


def read_anchor(key, text):
    """(height, hash, legacy) of a stored anchor, or a string saying what is wrong with it."""
    try:
        body = json.loads(text)
        mac = body.pop("mac")
        expected = hmac.new(key, canonical(dict(anchor=body)).encode("ascii"), hashlib.sha256).hexdigest()
    except (ValueError, KeyError, TypeError, AttributeError):
        return "the anchor of the audit trail (registry_meta audit_head) is unreadable"
    if not hmac.compare_digest(mac, expected):
        return ("the anchor of the audit trail (registry_meta audit_head) does not match its MAC: it was changed "
                "behind the registry's back")
    return body["height"], body["hash"], body["legacy"]


def verify(reg):
    """See :meth:`Registry.verify`.  Runs inside one read transaction of ``reg``."""
    store = reg.store
    entries = store.all("SELECT * FROM audit ORDER BY height")
    stored_anchor = store.get_meta("audit_head")
    key = reg._audit_key_for_read() if (entries or stored_anchor) else None
    head = None
    legacy = 0
    anchor_problem = None
    if stored_anchor is not None:
        parsed = read_anchor(key, stored_anchor) if key is not None else "no audit key"
        if isinstance(parsed, str):
            anchor_problem = parsed
            legacy = int(store.get_meta("legacy_entries") or 0)
        else:
            head = parsed
            legacy = parsed[2]
    elif entries:
        legacy = int(store.get_meta("legacy_entries") or 0)
        anchor_problem = ("the anchor of the audit trail (registry_meta audit_head) is missing: removed behind the "
                          "registry's back")
    prev = GENESIS_HASH
    expected_height = 1
    latest = {}
    count = 0
    for e in entries:
        count += 1
        before = json.loads(e["before"]) if e["before"] is not None else None
        after = json.loads(e["after"]) if e["after"] is not None else None
        kind = e.get("kind") or "node"
        where = "audit entry %d (%s %s)" % (e["height"], e["action"], e["label"])
        if e["height"] != expected_height:
            return problem(count, "%s: expected height %d; an entry is missing" % (where, expected_height),
                           e["height"], e["label"])
        if e["prev_hash"] != prev:
            return problem(count, "%s: prev_hash does not match the hash of entry %d" % (where, e["height"] - 1),
                           e["height"], e["label"])
        if e["height"] <= legacy:
            digest = entry_hash(e["height"], e["ts"], e["actor"], e["action"], e["label"], before, after,
                                e["prev_hash"])
            if digest != e["hash"]:
                return problem(count, "%s: content does not match its hash" % where, e["height"], e["label"])
        else:
            digest = keyed_hash(key, e["height"], e["ts"], e["actor"], e["action"], kind, e["label"], before, after,
                                e["prev_hash"])
            if not hmac.compare_digest(digest, e["hash"]):
                return problem(count, "%s: content does not match its hash (a keyed MAC): it was written or changed "
                               "by someone without the registry key" % where, e["height"], e["label"])
        prev = e["hash"]
        expected_height += 1
        if e["label"] is not None and kind in KINDS:
            # Each entry of a record starts where its previous entry ended (the first from nothing).
            previous = latest.get((kind, e["label"]))
            what = "node" if kind == "node" else kind
            if previous is None and before is not None:
                return problem(count, "%s: first entry of %s %r, but its 'before' is not empty: the record existed "
                               "without a trail (added behind the registry's back) or its earlier entries were "
                               "removed" % (where, what, e["label"]), e["height"], e["label"])
            if previous is not None and before != previous[1]:
                fields = ", ".join(differing(previous[1], before))
                return problem(count, "%s: its 'before' differs from audit entry %d in %s: %s %r was changed behind "
                               "the registry's back before this write" % (where, previous[0], fields, what, e["label"]),
                               e["height"], e["label"])
            latest[(kind, e["label"])] = (e["height"], after)
    if anchor_problem is not None:
        return problem(count, anchor_problem, None, None)
    if head is not None:
        last = (entries[-1]["height"], entries[-1]["hash"]) if entries else (0, GENESIS_HASH)
        if head[0] > last[0]:
            return problem(count, "the audit trail ends at entry %d, but its anchor records entry %d: the newest "
                           "entries were removed (truncated) behind the registry's back" % (last[0], head[0]),
                           head[0], None)
        if (head[0], head[1]) != last:
            return problem(count, "the audit trail's newest entry %d is not the one its anchor records (entry %d): "
                           "entries were replaced or added behind the registry's back" % (last[0], head[0]),
                           last[0], None)
    for kind, (table, keycol, _columns, _secret) in KINDS.items():
        what = "node" if kind == "node" else kind
        for row in store.all("SELECT * FROM %s ORDER BY %s" % (table, keycol)):
            label = row[keycol]
            if (kind, label) not in latest:
                return problem(count, "%s %r is in the registry but not in the audit trail" % (what, label),
                               None, label)
            height, after = latest.pop((kind, label))
            view = audit_view(row, kind)
            if after != view:
                return problem(count, "%s %r differs from audit entry %d in %s: changed behind the registry's back"
                               % (what, label, height, ", ".join(differing(after, view))), height, label)
    for (kind, label), (height, after) in sorted(latest.items()):
        if after is not None:
            return problem(count, "%s %r of audit entry %d is missing from the registry"
                           % ("node" if kind == "node" else kind, label, height), height, label)
    runs_problem = reg.runs.problem()
    if runs_problem is not None:
        return problem(count, runs_problem, None, None)
    return dict(ok=True, entries=count, problem=None, height=None, label=None)
