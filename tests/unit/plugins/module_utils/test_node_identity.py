"""node_identity without a container: where the identity comes from, and the registry following it."""

import base64

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError, ModuleFailure
from ansible_collections.fenrir.fleet.plugins.module_utils.node_identity import _file_mode, node_identity
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Pool, Registry


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "fleet.db")
    with Registry(path) as reg:
        with reg.transaction():
            reg.ensure({"label": "alpha"}, Pool())
    return path


def record(db, label="alpha"):
    with Registry(db, check_mode=True) as reg:
        return reg.get(label), reg.get_seed(label)


def run(db, check_mode=False, **params):
    return node_identity(dict(dict(registry=db, label="alpha", generate=True), **params), None, check_mode)


def test_without_any_identity_and_generate_false_nothing_is_made(db):
    with pytest.raises((FleetError, ModuleFailure), match=r"node 'alpha', field 'node_db_b64'.*generate is false"):
        run(db, generate=False)
    assert record(db)[1] is None


def test_a_generated_identity_is_kept_and_the_record_follows_it(db):
    first = run(db)
    row, seed = record(db)
    assert first["changed"] and first["source"] == "generated"
    assert row["node_id"] == first["node_id"] == ident.node_id_from_seed(seed)
    again = run(db)
    assert again == dict(first, changed=False, source="registry")


def test_a_given_identity_replaces_the_stored_one(db):
    run(db)
    seed = ident.new_seed()
    b64 = base64.b64encode(ident.build_node_db(seed)).decode()
    planned = run(db, check_mode=True, node_db_b64=b64)
    assert planned["changed"] and planned["node_id"] == ident.node_id_from_seed(seed)
    assert record(db)[1] != seed  # check mode wrote nothing
    given = run(db, node_db_b64=b64)
    assert given["source"] == "node_db_b64" and record(db)[1] == seed
    assert record(db)[0]["node_id"] == ident.node_id_from_seed(seed)


def test_bad_identity_names_the_node_and_the_field(db):
    with pytest.raises((FleetError, ModuleFailure)) as err:
        run(db, node_db_b64=base64.b64encode(b"not sqlite").decode())
    assert "node 'alpha'" in str(err.value) and "node_db_b64" in str(err.value)


@pytest.mark.parametrize("value,mode", [("0600", 0o600), ("644", 0o644), (384, 0o600), (None, 0o600)])
def test_file_mode_accepts_octal_strings_and_yaml_numbers(value, mode):
    assert _file_mode(value) == mode


@pytest.mark.parametrize("value", ["384x", "0800", "rw-------", 0o17777, "99999"])
def test_file_mode_refuses_anything_else_naming_the_field(value):
    with pytest.raises((FleetError, ModuleFailure), match="field 'mode'"):
        _file_mode(value)
