# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adoption of a fleet.db written by the original fleet-provision-docker-lite skill, and the scrubbing of the
plain text it leaves in a SQLite file.

Adoption runs inside the migration's write transaction, on either store (a ``fleet_nodes`` table found in a
registry), and appends a keyed ``adopt`` entry per row.  To adopt a file straight into PostgreSQL, see
``transfer.copy_registry`` (the file is adopted in memory, then copied; the file itself is not changed).
"""

from __future__ import annotations

import ipaddress
import time

from ansible_collections.fenrir.fleet.plugins.module_utils.naming import container_name, is_valid_label
from ansible_collections.fenrir.fleet.plugins.module_utils.registry.common import (
    SCRUB_PENDING, STATUSES, RegistryError, jsonable)


def adopt_original(reg):
    """Take over the original skill's ``fleet_nodes`` (schema 1).

    Every row is kept, oldest first (rows without created_at last); addresses of nodes that are not destroyed
    stay reserved.  A row the collection cannot run as it is becomes ``failed``, with a reason: a second row
    holding an address already taken (the original allocator's race), an invalid or missing address, or a
    label that is not a valid fenrir.fleet label (it keeps its address; the node can only be decommissioned).
    An unknown status becomes ``provisioning`` and is kept in ``reason``.  The plain-text secret columns are
    moved into the encrypted ``secrets`` blob (sealed to the row) and the old table is dropped; on SQLite
    :func:`scrub` then wipes the clear text from the file.
    """
    store = reg.store
    cols = set(store.columns("fleet_nodes"))

    def col(name):
        return name if name in cols else "NULL"

    rows = store.all(
        "SELECT label, %s AS server_id, %s AS provider, %s AS location, %s AS ip, %s AS node_id,"
        " %s AS encryption_key, %s AS seed_encrypted, %s AS nonce, %s AS status, %s AS created_at,"
        " %s AS last_seen, %s AS report_received_at FROM fleet_nodes ORDER BY %s IS NULL, %s, label"
        % tuple(col(c) for c in ("server_id", "provider", "location", "ip", "node_id", "encryption_key",
                                 "seed_encrypted", "nonce", "status", "created_at", "last_seen",
                                 "report_received_at", "created_at", "created_at")))
    now = time.time()
    taken = {}
    for r in rows:
        reasons = []
        status = r["status"]
        if status not in STATUSES:
            reasons.append("adopted with status %r, which fenrir.fleet does not know; recorded as provisioning"
                           % status if status is not None else "adopted with no status; recorded as provisioning")
            status = "provisioning"
        ip_int = None
        if status != "destroyed":
            if not r["ip"]:
                reasons.append("adopted with no address while %r: a live node needs one; provision it again "
                               "or decommission it" % r["status"])
                status = "failed"
            else:
                try:
                    ip_int = int(ipaddress.IPv4Address(r["ip"]))
                except ValueError:
                    status = "failed"
                    reasons.append("adopted with an invalid address %r" % r["ip"])
            if ip_int is not None and ip_int in taken:
                status = "failed"
                reasons.append("address %s was also held by %r in the original registry" % (r["ip"], taken[ip_int]))
                ip_int = None
            elif ip_int is not None:
                taken[ip_int] = r["label"]
            if not is_valid_label(r["label"]):
                status = "failed"
                reasons.insert(0, "label %r is not a valid fenrir.fleet label (1-56 characters of a-z, 0-9 and "
                                  "'-'); the node can only be decommissioned" % (r["label"],))
        legacy = {k: r[k] for k in ("encryption_key", "seed_encrypted") if r[k] is not None}
        secrets = reg._encrypt({"legacy": jsonable(legacy)}, r["label"]) if legacy else None
        record = dict(
            label=r["label"], server_id=r["server_id"] or container_name(r["label"]),
            provider=r["provider"] or "docker", location=r["location"], ip=r["ip"], ip_int=ip_int,
            node_id=r["node_id"], container_id=None, nonce=r["nonce"], status=status,
            reason="; ".join(reasons) or None, secrets=secrets,
            created_at=r["created_at"] if r["created_at"] is not None else now, updated_at=now,
            last_seen=r["last_seen"], report_received_at=r["report_received_at"], network_mode="bridge",
        )
        reg._insert(record)
        reg._audit("adopt", record["label"], None, reg.get_row(record["label"]))
    store.execute("DROP TABLE fleet_nodes")


def scrub(reg):
    """Wipe the plain text an adopted original fleet.db leaves in the file.

    The old table's pages, and pages or free space the original skill freed without secure_delete, still hold
    its clear-text secrets.  VACUUM rewrites every live page (into the WAL); a TRUNCATE checkpoint then copies
    them over fleet.db, cuts the file to its new size and empties the WAL.  A reader holding a snapshot from
    before keeps the checkpoint from finishing: it is retried until ``busy_timeout``, then refused.  The
    pending mark (registry_meta) goes only when it is done, so every later run tries again until it is.
    """
    import sqlite3
    conn = reg.store.conn
    deadline = time.time() + reg.busy_timeout
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA busy_timeout = 50")
        try:
            while list(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone().values())[0]:
                if time.time() >= deadline:
                    raise RegistryError(
                        "%s was adopted from the original skill, but the plain-text secrets it held could not "
                        "be wiped from the file within %d s: another process keeps it open in a read "
                        "transaction (a sqlite3 shell, a backup, a long inventory run?). Close it and run any "
                        "fenrir.fleet.fleet_registry task again; until then the old plain-text values remain in "
                        "the file and its WAL" % (reg.path, reg.busy_timeout), field="registry")
                time.sleep(0.05)
        finally:
            conn.execute("PRAGMA busy_timeout = %d" % int(reg.busy_timeout * 1000))
        conn.execute("DELETE FROM registry_meta WHERE key = ?", (SCRUB_PENDING,))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # tidy only: that frame holds no secret
        reg.store.private()
    except sqlite3.OperationalError as exc:
        raise RegistryError("%s was adopted from the original skill, but the plain-text secrets it held could "
                            "not be wiped from the file: %s. Make sure no other process uses it and run any "
                            "fenrir.fleet.fleet_registry task again" % (reg.path, exc), field="registry")
