"""Registry integrity: edits made behind the registry's back stay detected (audit chain per label, writes
refuse a record that no longer matches its trail), a record without an address cannot be made live,
fail() can keep the container, and verify() checks the index of held addresses."""

import ipaddress
import json
import os

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils.registry import RegistryError

from registry_testlib import POOL, alloc, edit, fleet, open_reg, sql, sqlite_steps


# --------------------------------------------------------------------------- 1. edits behind the registry's back

WRITES = {
    "set_fields": lambda reg: reg.set_fields("a", status="running"),
    "ensure": lambda reg: reg.ensure(dict(label="a", location="moved"), POOL),
    "ensure-unchanged": lambda reg: reg.ensure(dict(label="a"), POOL),
    "destroy": lambda reg: reg.destroy("a"),
    "fail": lambda reg: reg.fail("a", "boom"),
    "ensure_identity": lambda reg: reg.ensure_identity("a", os.urandom(32)),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_write_to_a_record_edited_behind_the_registrys_back_is_refused(loc, write):
    fleet(loc)
    edit(loc, "UPDATE nodes SET node_id = ?, location = 'elsewhere' WHERE label = 'a'", "ee" * 32)
    with open_reg(loc) as reg:
        n = len(reg.audit_entries())
        with pytest.raises(RegistryError) as err:
            with reg.transaction():
                WRITES[write](reg)
        assert err.value.label == "a"
        message = str(err.value)
        assert "node 'a'" in message and "changed outside the registry" in message
        assert "location" in message and "node_id" in message and "audit playbook" in message
        assert len(reg.audit_entries()) == n
        # the trail still says what was changed: the next write did not launder it
        result = reg.verify()
    assert result["ok"] is False and result["label"] == "a" and "location" in result["problem"]
    assert sql(loc, "SELECT location FROM nodes WHERE label = 'a'") == [{"location": "elsewhere"}]


def test_other_nodes_stay_writable_while_one_record_is_refused(loc):
    fleet(loc)
    edit(loc, "UPDATE nodes SET location = 'elsewhere' WHERE label = 'a'")
    with open_reg(loc) as reg:
        with reg.transaction():
            assert reg.set_fields("c", status="running") is True
        assert alloc(reg, "d")["ip"] == "172.21.0.13"


def test_record_deleted_behind_the_registrys_back_is_not_recreated_silently(loc):
    fleet(loc)
    edit(loc, "DELETE FROM nodes WHERE label = 'c'")
    with open_reg(loc) as reg:
        with pytest.raises(RegistryError) as err:
            alloc(reg, "c")
        assert err.value.label == "c" and "changed outside the registry" in str(err.value)
        assert "deleted" in str(err.value)
        assert reg.get("c") is None
        result = reg.verify()
    assert result["ok"] is False and result["label"] == "c"


def test_record_inserted_behind_the_registrys_back_is_not_written(loc):
    fleet(loc)
    edit(loc, "INSERT INTO nodes (label, server_id, ip, ip_int, created_at, updated_at)"
              " VALUES ('sneaky', 'fenrir-sneaky', '172.21.0.200', ?, 0, 0)",
         int(ipaddress.IPv4Address("172.21.0.200")))
    with open_reg(loc) as reg:
        with pytest.raises(RegistryError) as err:
            with reg.transaction():
                reg.set_fields("sneaky", status="online")
        assert err.value.label == "sneaky" and "no entry in the audit trail" in str(err.value)


def test_verify_reports_an_edit_laundered_by_a_later_write(loc):
    """A trail written by an older collection, which recorded the edited row as the next write's 'before'."""
    fleet(loc)
    edit(loc, "UPDATE nodes SET location = 'elsewhere' WHERE label = 'a'")
    with open_reg(loc) as reg:
        with reg.transaction():
            before = reg.get_row("a")
            reg._update("a", dict(status="running", updated_at=before["updated_at"] + 1))
            reg._audit("update", "a", before, reg.get_row("a"))
        height = reg.audit_entries()[-1]["height"]
        result = reg.verify()
    assert result["ok"] is False
    assert (result["height"], result["label"]) == (height, "a")
    assert "location" in result["problem"] and "before" in result["problem"]


def test_verify_reports_a_first_entry_that_does_not_start_from_nothing(loc):
    fleet(loc)
    with open_reg(loc) as reg:
        with reg.transaction():
            a = reg.get_row("a")
            record = {k: a[k] for k in a.keys()}
            record.update(label="z", server_id="fenrir-z", ip="172.21.0.99",
                          ip_int=int(ipaddress.IPv4Address("172.21.0.99")))
            reg._insert(record)
            reg._audit("allocate", "z", a, reg.get_row("z"))      # 'before' is another node's record
        height = reg.audit_entries()[-1]["height"]
        result = reg.verify()
    assert result["ok"] is False and (result["height"], result["label"]) == (height, "z")
    assert "first entry" in result["problem"]


def test_adopted_and_reallocated_labels_chain_cleanly(loc):
    fleet(loc)
    with open_reg(loc) as reg:
        with reg.transaction():
            reg.destroy("c")
        alloc(reg, "c")
        with reg.transaction():
            reg.fail("c", "x", release=True)
        alloc(reg, "c")
        entries = [e for e in reg.audit_entries() if e["label"] == "c"]
        for prev, e in zip(entries, entries[1:]):
            assert json.loads(e["before"]) == json.loads(prev["after"])
        assert reg.verify()["ok"] is True


def test_accepting_an_external_change_records_it_and_unblocks_writes(loc):
    fleet(loc)
    edit(loc, "UPDATE nodes SET location = 'elsewhere' WHERE label = 'a'")
    with open_reg(loc, actor="operator") as reg:
        with reg.transaction():
            assert reg.accept_external_change("a") is True
            assert reg.accept_external_change("a") is False      # nothing left to accept
        last = reg.audit_entries()[-1]
        assert (last["action"], last["label"], last["actor"]) == ("accept", "a", "operator")
        assert json.loads(last["before"])["location"] == "x" and json.loads(last["after"])["location"] == "elsewhere"
        assert reg.verify()["ok"] is True
        with reg.transaction():
            assert reg.set_fields("a", status="running") is True
        assert reg.verify()["ok"] is True


def test_the_check_before_a_write_does_not_grow_with_the_trail(tmp_path):
    """The check reads only the newest audit entry of the label (an index probe), not the trail."""
    costs = {}
    for size in (20, 2000):
        path = str(tmp_path / ("fleet-%d.db" % size))
        with open_reg(path) as reg:
            with reg.transaction():
                reg.ensure(dict(label="target"), POOL)
                for i in range(size):
                    reg.set_fields("target", reason="r%d" % i)
            steps = []
            for i in range(5):
                with reg.transaction():
                    steps.append(sqlite_steps(reg.conn, lambda: reg.set_fields("target", reason="final-%d" % i))[0])
            costs[size] = min(steps)
    assert costs[2000] < costs[20] * 1.5, costs


# --------------------------------------------------------------------------- 2. no live record without an address

@pytest.mark.parametrize("status", ["provisioning", "running", "online"])
def test_destroyed_record_cannot_be_made_live_again(loc, status):
    fleet(loc)
    with open_reg(loc) as reg:
        with reg.transaction():
            reg.destroy("c")
        # meanwhile the address was handed out again
        assert alloc(reg, "d")["ip"] == "172.21.0.12"
        with pytest.raises(RegistryError) as err:
            with reg.transaction():
                reg.set_fields("c", status=status, container_id="late", reason=None)
        assert (err.value.label, err.value.field) == ("c", "status")
        assert "no address" in str(err.value)
        assert reg.get("c")["status"] == "destroyed" and reg.get("c")["container_id"] is None
        # only ensure() brings it back, with an address of its own
        after = alloc(reg, "c")
        assert after["status"] == "provisioning" and after["ip"] == "172.21.0.13" and after["address_held"]
        assert reg.verify()["ok"] is True


def test_released_failed_record_cannot_be_made_live_but_can_be_annotated(loc):
    fleet(loc)
    with open_reg(loc) as reg:
        with reg.transaction():
            reg.fail("c", "no container", release=True)
        with pytest.raises(RegistryError) as err:
            with reg.transaction():
                reg.set_fields("c", status="running")
        assert (err.value.label, err.value.field) == ("c", "status")
        with reg.transaction():
            assert reg.set_fields("c", reason="still no container") is True
            assert reg.set_fields("c", status="failed") is False
        with reg.transaction():
            reg.destroy("c")
            assert reg.set_fields("c", status="failed", reason="failed after decommission") is True
        assert reg.get("c")["address_held"] is False


# --------------------------------------------------------------------------- 7. fail() and the container

def test_fail_clears_the_container_only_when_it_was_removed(loc):
    fleet(loc)
    with open_reg(loc) as reg:
        with reg.transaction():
            assert reg.fail("a", "health check failed", container_removed=False) is True
        assert reg.get("a")["container_id"] == "c0ffee" and reg.get("a")["status"] == "failed"
        with reg.transaction():
            reg.fail("a", "removed")
        assert reg.get("a")["container_id"] is None
        assert reg.verify()["ok"] is True


# --------------------------------------------------------------------------- 9. the index of held addresses

def _tamper_allocation_state(path, how):
    if how == "claims-free-held":
        edit(path, "UPDATE held_runs SET run_end = run_end + 3")
    elif how == "claims-held-free":
        edit(path, "UPDATE held_runs SET run_end = run_end - 1")
    elif how == "dropped":
        edit(path, "DELETE FROM held_runs")


@pytest.mark.parametrize("how", ["claims-free-held", "claims-held-free", "dropped"])
def test_verify_reports_a_tampered_allocation_index(loc, how):
    fleet(loc)
    _tamper_allocation_state(loc, how)
    with open_reg(loc) as reg:
        result = reg.verify()
    assert result["ok"] is False and result["label"] is None
    assert "held addresses" in result["problem"] and "behind the registry's back" in result["problem"]


def test_an_index_claiming_a_held_address_free_never_hands_it_out(loc):
    fleet(loc)
    _tamper_allocation_state(loc, "claims-held-free")
    with open_reg(loc) as reg:
        assert alloc(reg, "d")["ip"] == "172.21.0.13"
        assert reg.verify()["ok"] is True     # the allocation noticed and rebuilt the index
