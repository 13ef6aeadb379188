"""knarr_container's own logic, against a real (SQLite) registry and no Docker: the provisioner identity (made on
first use, or the operator's own), the nodes' cockpit tokens (kept in the registry, rendered, never returned)."""

import base64
import json

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.fenrir.fleet.plugins.module_utils import fleet_registry, knarr_container
from ansible_collections.fenrir.fleet.plugins.module_utils import identity as ident
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_wire import Identity
from ansible_collections.fenrir.fleet.plugins.module_utils.module_runner import RUNTIME_SECRETS, runtime_secrets
from ansible_collections.fenrir.fleet.plugins.module_utils.registry import Registry


def params(logic, **args):
    result = ArgumentSpecValidator(**logic.ARGUMENT_SPEC).validate(args)
    assert not result.error_messages, result.error_messages
    return result.validated_parameters


@pytest.fixture
def reserved(db):
    fleet_registry.run(params(fleet_registry, registry=db, nodes=[dict(label="alpha"), dict(label="beta")]))
    return db


def works(db, check_mode=False, **args):
    p = params(knarr_container, registry=db, nodes=[dict(label="alpha"), dict(label="beta", cockpit_port=0)], **args)
    warnings = []
    with Registry(db, check_mode=check_mode) as reg:
        provisioner, changed = knarr_container._provisioner(reg, p)
        out = knarr_container._works(reg, p, check_mode, {}, provisioner, warnings)
    return provisioner, changed, {w.label: w for w in out}, warnings


def toml_of(work):
    import tomllib
    return tomllib.loads(work.files["/opt/knarr/knarr.toml"][0].decode())


def test_the_provisioner_is_made_once_and_named_in_every_nodes_peer_overrides(reserved):
    provisioner, changed, nodes, warnings = works(reserved)
    assert changed and warnings == []
    again, changed_again, dummy, dummy2 = works(reserved)
    assert not changed_again and again.node_id == provisioner.node_id
    for work in nodes.values():
        assert work.spec["provisioner_node_id"] == provisioner.node_id
        assert toml_of(work)["peer_overrides"] == {provisioner.node_id[:16]: "172.21.0.1:9040"}
    with Registry(reserved) as reg:
        assert Identity(reg.provisioner_seed(create=False)).node_id == provisioner.node_id


@pytest.mark.parametrize("form", ["node.db", "seed"])
def test_the_operators_own_provisioner_identity_replaces_the_made_one(reserved, form):
    made = works(reserved)[0]
    seed = bytes(range(7, 39))
    b64 = base64.b64encode(ident.build_node_db(seed) if form == "node.db" else seed).decode()
    provisioner, changed, nodes, dummy = works(reserved, provisioner_db_b64=b64)
    assert changed and provisioner.node_id == ident.node_id_from_seed(seed) != made.node_id
    assert nodes["alpha"].spec["provisioner_node_id"] == provisioner.node_id
    assert works(reserved, provisioner_db_b64=b64)[1] is False
    assert works(reserved)[0].node_id == provisioner.node_id  # kept in the registry


@pytest.mark.parametrize("value, words", [
    ("!!!", "not valid base64"), (base64.b64encode(b"x" * 31).decode(), "no SQLite header"),
    (base64.b64encode(ident.build_node_db(bytes(32))[:-512]).decode(), "truncated"),
])
def test_a_bad_provisioner_identity_is_refused_naming_the_field(reserved, value, words):
    with pytest.raises(FleetError) as err:
        works(reserved, provisioner_db_b64=value)
    assert err.value.field == "provisioner_db_b64" and words in str(err.value) and value not in str(err.value)


def test_a_provisioner_node_id_of_another_key_is_kept_with_a_warning(reserved):
    dummy, dummy2, nodes, warnings = works(reserved)
    p = params(knarr_container, registry=reserved, nodes=[dict(label="alpha", provisioner_node_id="ab" * 8)])
    found = []
    with Registry(reserved) as reg:
        provisioner, dummy = knarr_container._provisioner(reg, p)
        [work] = knarr_container._works(reg, p, False, {}, provisioner, found)
    assert work.spec["provisioner_node_id"] == "ab" * 8
    assert len(found) == 1 and "not this registry's provisioner identity" in found[0]


def test_each_node_gets_its_own_cockpit_token_kept_in_the_registry(reserved, db):
    dummy, dummy2, nodes, dummy3 = works(reserved)
    token = nodes["alpha"].cockpit_token
    assert token and len(token) >= 40
    assert toml_of(nodes["alpha"])["cockpit"] == dict(port=8080, bind="127.0.0.1", auth_token=token)
    assert nodes["alpha"].files["/opt/knarr/knarr.toml"][1] == 0o600
    assert nodes["beta"].cockpit_token is None and "auth_token" not in toml_of(nodes["beta"])["cockpit"]
    assert works(reserved)[2]["alpha"].cockpit_token == token  # kept, not remade
    with Registry(reserved) as reg:
        assert reg.get_secret("alpha", "cockpit_token") == token
        entries = json.dumps(reg.audit_entries())
    with open(db, "rb") as fh:
        assert token.encode() not in fh.read()  # encrypted at rest
    assert token not in entries


def test_check_mode_plans_tokens_without_keeping_them(reserved):
    planned = works(reserved, check_mode=True)[2]["alpha"].cockpit_token
    assert planned
    with Registry(reserved) as reg:
        assert reg.get_secret("alpha", "cockpit_token") is None


def test_tokens_are_handed_over_for_masking_and_never_returned(reserved):
    dummy, dummy2, nodes, dummy3 = works(reserved)
    token = nodes["alpha"].cockpit_token
    result = knarr_container._outcome(list(nodes.values()), False, None, False, "reconciled", dummy, False, [])
    assert result[RUNTIME_SECRETS] == [token]
    assert runtime_secrets(result) == {token} and RUNTIME_SECRETS not in result
    assert token not in json.dumps(result)


def test_probing_renders_nothing_and_makes_no_token(reserved):
    p = params(knarr_container, registry=reserved, nodes=[dict(label="alpha")], state="probed")
    with Registry(reserved) as reg:
        provisioner, dummy = knarr_container._provisioner(reg, p)
        [work] = knarr_container._works(reg, p, False, {}, provisioner, [])
        assert work.cockpit_token is None and reg.get_secret("alpha", "cockpit_token") is None
