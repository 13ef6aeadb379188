"""The fleet_registry module, run as Ansible runs it: a separate Python process reading
``{"ANSIBLE_MODULE_ARGS": {...}}`` and printing one JSON result."""

import base64
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
REPO_ROOT = os.path.dirname(TESTS_DIR)
COLLECTIONS_DIR = os.path.join(REPO_ROOT, "collections")
MODULE = "ansible_collections.fenrir.fleet.plugins.modules.fleet_registry"


def start_module(tmp_path, check_mode=False, diff=False, **args):
    """Start the module in its own Python process; finish_module() collects its result."""
    args = dict(args)
    args["_ansible_check_mode"] = check_mode
    args["_ansible_diff"] = diff
    argfile = tmp_path / ("args-%s.json" % os.urandom(4).hex())
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_DIR, FENRIR_ACTOR="pytest")
    proc = subprocess.Popen([sys.executable, "-m", MODULE, str(argfile)], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, argfile


def finish_module(started):
    proc, argfile = started
    stdout, stderr = proc.communicate(timeout=60)
    argfile.unlink()
    proc.stdout, proc.stderr = stdout, stderr
    try:
        result = json.loads(stdout)
    except ValueError:
        pytest.fail("module printed no JSON (rc=%d):\n%s\n%s" % (proc.returncode, stdout, stderr))
    return proc, result


def run_module(tmp_path, **kw):
    return finish_module(start_module(tmp_path, **kw))


def rows(db, sql):
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    return str(d / "fleet.db")


def test_allocates_then_is_idempotent(tmp_path, db):
    proc, first = run_module(tmp_path, registry=db, label="alpha", location="eu-north")
    assert proc.returncode == 0, first
    assert first["changed"] is True
    assert first["node"]["ip"] == "172.21.0.10" and first["node"]["status"] == "provisioning"
    assert first["node"]["has_identity"] is True and len(first["node"]["node_id"]) == 64
    assert "secrets" not in first["node"]
    proc, second = run_module(tmp_path, registry=db, label="alpha", location="eu-north")
    assert proc.returncode == 0 and second["changed"] is False
    assert second["node"] == first["node"]
    proc, beta = run_module(tmp_path, registry=db, label="beta")
    assert beta["changed"] is True and beta["node"]["ip"] == "172.21.0.11"
    assert rows(db, "SELECT label, ip, status FROM nodes ORDER BY label") == [
        ("alpha", "172.21.0.10", "provisioning"), ("beta", "172.21.0.11", "provisioning")]
    actors = {r[0] for r in rows(db, "SELECT actor FROM audit")}
    assert actors == {"pytest"}


def test_many_nodes_and_absent(tmp_path, db):
    proc, res = run_module(tmp_path, registry=db, nodes=[dict(label="a"), dict(label="b", ip="172.21.0.50"),
                                                         dict(label="c")])
    assert proc.returncode == 0, res
    assert [n["ip"] for n in res["nodes"]] == ["172.21.0.10", "172.21.0.50", "172.21.0.11"]
    proc, res = run_module(tmp_path, registry=db, label="a", state="absent", diff=True)
    assert res["changed"] is True and res["node"]["status"] == "destroyed"
    assert res["diff"]["before"]["a"]["status"] == "provisioning"
    assert res["diff"]["after"]["a"]["status"] == "destroyed"
    proc, res = run_module(tmp_path, registry=db, label="a", state="absent")
    assert res["changed"] is False
    assert rows(db, "SELECT ip_int FROM nodes WHERE label = 'a'") == [(None,)]


def test_check_mode_reports_plan_and_writes_nothing(tmp_path, db):
    proc, res = run_module(tmp_path, check_mode=True, registry=db, label="alpha")
    assert proc.returncode == 0, res
    assert res["changed"] is True and res["node"]["ip"] == "172.21.0.10"
    assert os.listdir(os.path.dirname(db)) == []           # no fleet.db, no fleet.key
    run_module(tmp_path, registry=db, label="alpha")
    before = rows(db, "SELECT * FROM nodes"), rows(db, "SELECT * FROM audit")
    proc, res = run_module(tmp_path, check_mode=True, registry=db, label="beta")
    assert res["changed"] is True and res["node"]["ip"] == "172.21.0.11"
    proc, res = run_module(tmp_path, check_mode=True, registry=db, label="alpha", state="absent")
    assert res["changed"] is True and res["node"]["status"] == "destroyed"
    assert (rows(db, "SELECT * FROM nodes"), rows(db, "SELECT * FROM audit")) == before


BAD_INPUTS = [
    (dict(label="alpha", ip="10.0.0.5"), "alpha", "ip"),
    (dict(label="alpha", ip="172.21.0.1"), "alpha", "ip"),
    (dict(label="alpha", node_db_b64="bm90IGEgZGF0YWJhc2U="), "alpha", "node_db_b64"),
    (dict(label="alpha", node_db_b64="%%%"), "alpha", "node_db_b64"),
    (dict(label="Bad_Label"), "Bad_Label", "label"),
    (dict(label="alpha\n"), "alpha\n", "label"),
    (dict(nodes=[dict(label="ok-1"), dict(label="ok-2", ip="8.8.8.8")]), "ok-2", "ip"),
    (dict(nodes=[dict(label="dup"), dict(label="dup")]), "dup", "label"),
    (dict(label="alpha", node_id="short"), "alpha", "node_id"),
]


def test_bad_input_names_node_and_field_and_writes_nothing(tmp_path):
    # all cases at once (each its own process and directory): one module run costs ~0.4 s of imports
    started = []
    for i, (args, label, field) in enumerate(BAD_INPUTS):
        d = tmp_path / ("case-%d" % i)
        d.mkdir()
        db = str(d / "state" / "fleet.db")
        started.append((args, label, field, db, start_module(d, registry=db, **args)))
    for args, label, field, db, handle in started:
        proc, res = finish_module(handle)
        assert proc.returncode != 0 and res.get("failed") is True, args
        assert "node %r" % label in res["msg"] and "field %r" % field in res["msg"], (args, res["msg"])
        assert not os.path.exists(os.path.dirname(db)), args       # not even the registry's directory


def test_bad_input_against_existing_registry_changes_nothing(tmp_path, db):
    run_module(tmp_path, registry=db, label="owner", ip="172.21.0.77")
    before = rows(db, "SELECT * FROM nodes"), rows(db, "SELECT * FROM audit")
    proc, res = run_module(tmp_path, registry=db, nodes=[dict(label="fine"), dict(label="thief", ip="172.21.0.77")])
    assert res.get("failed") is True
    assert "node 'thief'" in res["msg"] and "field 'ip'" in res["msg"] and "'owner'" in res["msg"]
    proc, res = run_module(tmp_path, registry=db, label="owner", ip="172.21.0.78")
    assert res.get("failed") is True and "node 'owner'" in res["msg"]
    assert (rows(db, "SELECT * FROM nodes"), rows(db, "SELECT * FROM audit")) == before


def test_node_db_b64_never_printed(tmp_path, db):
    seed = os.urandom(32)
    node_db = base64.b64encode(ident.build_node_db(seed)).decode("ascii")
    for diff in (False, True):
        proc, res = run_module(tmp_path, diff=diff, registry=db, label="alpha", node_db_b64=node_db)
        assert proc.returncode == 0, res
        assert res["node"]["node_id"] == ident.node_id_from_seed(seed)
        for secret in (node_db, seed.hex(), base64.b64encode(seed).decode()):
            assert secret not in proc.stdout and secret not in proc.stderr
    assert res["changed"] is False                       # the same identity again: no change
    # a bad image is refused without echoing it
    bad = base64.b64encode(b"SQLite format 3\x00" + seed * 50).decode()
    proc, res = run_module(tmp_path, registry=db, label="alpha", node_db_b64=bad)
    assert res.get("failed") is True and "field 'node_db_b64'" in res["msg"]
    assert bad not in proc.stdout and seed.hex() not in proc.stdout
