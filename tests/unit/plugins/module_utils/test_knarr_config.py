"""knarr.toml as data, rendered by a real TOML writer (knarr_config.py); a node's settings (node_spec.py); payloads."""

import base64
import copy
import json
import tomllib

import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import knarr_config as kc
from ansible_collections.fenrir.fleet.plugins.module_utils import node_spec as ns
from ansible_collections.fenrir.fleet.plugins.module_utils.identity import build_node_db, node_id_from_seed
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError

HOSTILE = [
    'quote " inside',
    "single ' quote",
    "newline\nsecond line",
    'close ] bracket',
    "]\n[x]\nevil = true",
    '"\n[node]\nport = 1\n#',
    "\\ backslash \\n not a newline",
    "tab\tand \r carriage return",
    "unicode \u00f8\u00e6\u00e5 \u2014 \U0001F680 \u202e",
    "[x]",
    "a = 1",
    "",
]
EXPECTED_TABLES = {"node", "cockpit", "network", "token", "policy", "skills", "fenrir"}


def spec(**kw):
    raw = dict(label="alpha")
    raw.update(kw)
    return ns.normalize_node(raw)


def render_and_parse(config):
    text = kc.render_toml(config)
    return text, tomllib.loads(text)


# --------------------------------------------------------------------------- TOML

def test_default_config_round_trips_and_has_the_knarr_layout():
    s = spec(location="eu-north", provisioner_node_id="0123456789abcdef" * 4, bootstrap=["boot.example:9000"])
    config = kc.build_config(s, "172.21.0.10")
    text, parsed = render_and_parse(config)
    assert parsed == config
    assert parsed["node"] == dict(host="0.0.0.0", port=9010, advertise_host="172.21.0.10", sidecar_port=9011,
                                  storage="node.db", jurisdiction="eu", tls=True, tls_required=True,
                                  auto_upgrade=False)
    assert parsed["cockpit"] == dict(port=8080, bind="127.0.0.1")
    assert parsed["network"] == dict(bootstrap=["boot.example:9000"], upnp=False)
    assert parsed["token"] == dict(rpc_url="http://127.0.0.1:9")
    assert parsed["policy"] == dict(initial_credit=100000.0, min_balance=-100000.0)
    assert parsed["peer_overrides"] == {"0123456789abcdef": "172.21.0.1:9040"}
    echo = parsed["skills"]["echo"]
    assert echo["handler"] == "skills/echo.py:handle" and echo["price"] == 0.0
    assert echo["tags"] == ["echo", "fenrir"]
    assert echo["description"] == "Echo skill \u2014 proof of life for alpha"


def test_nothing_in_the_default_config_makes_a_knarr_node_dial_out():
    """knarr v0.57 reaches out on its own unless told not to: default bootstrap peers, public-IP detection
    without advertise_host, UPnP, auto-upgrade, the wallet's RPC (cli/main.py, dht/node.py)."""
    parsed = render_and_parse(kc.build_config(spec(), "172.21.0.10"))[1]
    assert parsed["network"]["bootstrap"] == [] and parsed["network"]["upnp"] is False
    assert parsed["node"]["advertise_host"] == "172.21.0.10"
    assert parsed["node"]["auto_upgrade"] is False
    assert parsed["token"]["rpc_url"].startswith("http://127.0.0.1:")
    assert parsed["node"]["tls"] is True and parsed["node"]["tls_required"] is True
    assert parsed["skills"]["echo"]["price"] == 0.0


def test_config_overrides_can_turn_tls_off_for_an_old_peer():
    parsed = render_and_parse(kc.build_config(spec(config_overrides={"node": {"tls": False}}), "172.21.0.10"))[1]
    assert parsed["node"]["tls"] is False and parsed["node"]["tls_required"] is True


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_location_round_trips_and_adds_nothing(value):
    config = kc.build_config(spec(location=value), "172.21.0.10")
    dummy, parsed = render_and_parse(config)
    assert parsed == config
    assert parsed["fenrir"]["location"] == value
    assert set(parsed) == EXPECTED_TABLES
    assert set(parsed["fenrir"]) == {"label", "server_id", "location"}
    assert parsed["node"]["port"] == 9010 and "evil" not in parsed


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_echo_tags_round_trip_and_add_nothing(value):
    tags = [value, "echo", value + value]
    config = kc.build_config(spec(echo_tags=tags), "172.21.0.10")
    dummy, parsed = render_and_parse(config)
    assert parsed == config
    assert parsed["skills"]["echo"]["tags"] == tags
    assert set(parsed) == EXPECTED_TABLES and set(parsed["skills"]) == {"echo"}
    assert set(parsed["skills"]["echo"]) == {"description", "handler", "price", "tags", "input_schema",
                                             "output_schema"}


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_bootstrap_renders_safely_even_if_it_got_past_validation(value):
    s = spec()
    s["bootstrap"] = [value, "ok.example:9000"]          # bypassing normalize_spec on purpose
    config = kc.build_config(s, "172.21.0.10")
    dummy, parsed = render_and_parse(config)
    assert parsed == config
    assert parsed["network"]["bootstrap"] == [value, "ok.example:9000"]
    assert set(parsed) == EXPECTED_TABLES and set(parsed["network"]) == {"bootstrap", "upnp"}


@pytest.mark.parametrize("peer", ['evil"host:9000', "a\nb:9000", "[x]:9000", "host:9000]", "host", "host:0",
                                  "host:70000", ":9000", "host:abc", "host:\u00b2", "host:-1", 9000])
def test_hostile_bootstrap_is_refused_by_validation(peer):
    with pytest.raises(SpecError) as err:
        spec(bootstrap=[peer])
    assert err.value.field == "bootstrap" and err.value.label == "alpha"
    assert "node 'alpha', field 'bootstrap'" in str(err.value)


def test_hostile_label_cannot_reach_the_file():
    for label in ('a"b', "a\nb", "a]b", "[x]"):
        with pytest.raises(SpecError):
            spec(label=label)


def test_config_overrides_merge_deeply():
    s = spec(config_overrides={"node": {"port": 9999}, "mail": {"smtp_password": 'tok"en\n'},
                               "skills": {"other": {"handler": "x.py:h"}}})
    config = kc.build_config(s, "172.21.0.10")
    dummy, parsed = render_and_parse(config)
    assert parsed == config
    assert parsed["node"]["port"] == 9999 and parsed["node"]["host"] == "0.0.0.0"
    assert parsed["mail"] == dict(smtp_password='tok"en\n') and parsed["cockpit"] == dict(port=8080, bind="127.0.0.1")
    assert set(parsed["skills"]) == {"echo", "other"}


def test_node_files_are_the_rendered_toml_and_echo_skill():
    s = spec(location='x"]\n[y]')
    files = kc.node_files(s, "172.21.0.10")
    assert set(files) == {"/opt/knarr/knarr.toml", "/opt/knarr/skills/echo.py"}
    data, mode = files["/opt/knarr/knarr.toml"]
    assert mode == 0o644 and tomllib.loads(data.decode("utf-8"))["fenrir"]["location"] == 'x"]\n[y]'
    assert b"async def handle(input_data: dict) -> dict" in files["/opt/knarr/skills/echo.py"][0]


# --------------------------------------------------------------------------- memory

@pytest.mark.parametrize("value, expected", [
    ("256m", 256 * 1024 ** 2), ("256M", 256 * 1024 ** 2), ("1g", 1024 ** 3), ("512MiB", 512 * 1024 ** 2),
    ("256 MB", 256 * 1024 ** 2), ("6m", 6 * 1024 ** 2), (268435456, 268435456), ("268435456", 268435456),
    ("8192k", 8 * 1024 ** 2), ("1G", 1024 ** 3),
])
def test_memory_parsing(value, expected):
    assert ns.parse_memory(value) == expected


@pytest.mark.parametrize("value", ["5m", "1024k", 1024, "abc", "-1m", "1.5g", "", "256x", True, None, "m"])
def test_memory_refused(value):
    with pytest.raises(SpecError) as err:
        ns.parse_memory(value, "alpha")
    assert err.value.field == "memory" and err.value.label == "alpha"


def test_spec_memory_bytes():
    assert spec(memory="1g")["memory_bytes"] == 1024 ** 3


# --------------------------------------------------------------------------- specs

def test_normalize_is_idempotent_and_fills_defaults():
    s = spec(location="eu")
    assert s["server_id"] == "fenrir-alpha" and s["memory_bytes"] == 256 * 1024 ** 2
    assert ns.normalize_node(copy.deepcopy(s)) == s
    assert s["echo_tags"] is not ns.NODE_OPTIONS["echo_tags"]["default"]


@pytest.mark.parametrize("field, value", [
    ("port", 0), ("port", 70000), ("port", "ninety"), ("cockpit_port", True),
    ("pids_limit", 0), ("restart_policy", "sometimes"), ("ip", "300.1.1.1"), ("location", "x" * 129),
    ("provisioner_node_id", "XYZ"), ("provisioner_node_id", "0123456789abcdef\n"), ("echo_tags", {"a": 1}),
    ("image", "bad image"), ("initial_credit", "lots"), ("config_overrides", []),
    ("bogus_field", 1), ("bootstrap", ["nohost"]), ("memory", "256x"),
])
def test_spec_field_errors_name_the_field(field, value):
    with pytest.raises(SpecError) as err:
        spec(**{field: value})
    assert err.value.field == field and err.value.label == "alpha"
    assert "node 'alpha', field %r" % field in str(err.value)


# --------------------------------------------------------------------------- payloads

NODE_DB_B64 = base64.b64encode(build_node_db(bytes(range(32)))).decode("ascii")
PAYLOAD = dict(label="alpha", location="eu-north", node_db_b64=NODE_DB_B64, provisioner_node_id="ab" * 32,
               nonce="n-1", echo_source="async def handle(d): return d")


def test_parse_payload_from_json_and_dict():
    raw = kc.parse_payload(json.dumps(PAYLOAD), False)
    assert raw == dict(label="alpha", location="eu-north", node_db_b64=NODE_DB_B64, provisioner_node_id="ab" * 32,
                       nonce="n-1", echo_source="async def handle(d): return d")
    assert kc.parse_payload(dict(PAYLOAD), True) == raw
    assert kc.parse_payload(json.dumps(PAYLOAD)) == raw


NODE_ID = node_id_from_seed(bytes(range(32)))
REFERENCE = dict(label="alpha", location="eu-north", node_id=NODE_ID, nonce="n-1", provisioner_node_id="ab" * 32)


def test_parse_reference_payload_holds_no_identity():
    """prepare-payload's payload names the identity it reserved in the registry; the seed is not in it."""
    raw = kc.parse_payload(json.dumps(REFERENCE), False)
    assert raw == dict(REFERENCE)
    assert "node_db_b64" not in raw


def test_payload_with_identity_and_node_id_must_agree():
    both = dict(PAYLOAD, node_id=NODE_ID)
    assert kc.parse_payload(both)["node_id"] == NODE_ID
    with pytest.raises(SpecError) as err:
        kc.parse_payload(dict(PAYLOAD, node_id="cd" * 32))
    assert err.value.field == "payload_json.node_id" and NODE_DB_B64 not in str(err.value)


@pytest.mark.parametrize("payload, field", [
    ("{not json", "payload_json"),
    ("", "payload_json"),
    (None, "payload_json"),
    ("[1, 2]", "payload_json"),
    ('"a string"', "payload_json"),
    (json.dumps({k: v for k, v in PAYLOAD.items() if k != "label"}), "payload_json.label"),
    (json.dumps({k: v for k, v in PAYLOAD.items() if k != "location"}), "payload_json.location"),
    (json.dumps(dict(PAYLOAD, location="")), "payload_json.location"),
    (json.dumps({k: v for k, v in PAYLOAD.items() if k != "node_db_b64"}), "payload_json.node_id"),
    (json.dumps(dict(PAYLOAD, node_db_b64=None)), "payload_json.node_id"),
    (json.dumps(dict(REFERENCE, node_id="AB" * 32)), "payload_json.node_id"),
    (json.dumps(dict(REFERENCE, node_id="ab" * 31)), "payload_json.node_id"),
    (json.dumps(dict(REFERENCE, node_id=42)), "payload_json.node_id"),
    (json.dumps(dict(PAYLOAD, node_db_b64="not base64 %%")), "payload_json.node_db_b64"),
    (json.dumps(dict(PAYLOAD, node_db_b64=base64.b64encode(b"plain text").decode())), "payload_json.node_db_b64"),
    (json.dumps(dict(PAYLOAD, label="Bad_Label")), "label"),
])
def test_parse_payload_errors_name_the_field(payload, field):
    with pytest.raises(SpecError) as err:
        kc.parse_payload(payload, False)
    assert err.value.field == field
    assert "field %r" % field in str(err.value)


@pytest.mark.parametrize("dry_run", ["true", "false", 1, 0, "yes"])
def test_dry_run_must_be_a_boolean(dry_run):
    with pytest.raises(SpecError) as err:
        kc.parse_payload(json.dumps(PAYLOAD), dry_run)
    assert err.value.field == "dry_run"


def test_payload_secret_not_in_errors(tmp_path):
    secret = "U0VDUkVUU0VDUkVUU0VDUkVU"
    for payload in (dict(PAYLOAD, node_db_b64=secret, location=None), dict(PAYLOAD, node_db_b64=secret)):
        with pytest.raises(SpecError) as err:
            kc.parse_payload(json.dumps(payload), False)
        assert secret not in str(err.value)
    # a node.db whose identity is refused (31-byte key): neither the image nor the key is echoed
    import sqlite3
    key = bytes(range(100, 131))
    path = str(tmp_path / "node.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE node_identity (key_bytes BLOB)")
    conn.execute("INSERT INTO node_identity VALUES (?)", (key,))
    conn.commit()
    conn.close()
    with open(path, "rb") as fh:
        image = base64.b64encode(fh.read()).decode()
    with pytest.raises(SpecError) as err:
        kc.parse_payload(json.dumps(dict(PAYLOAD, node_db_b64=image)), False)
    assert err.value.field == "payload_json.node_db_b64" and "31 bytes" in str(err.value)
    for form in (image[:40], key.hex(), base64.b64encode(key).decode(), repr(key)[2:-1]):
        assert form not in str(err.value)


# --------------------------------------------------------------------------- the cockpit and what overrides may not do

def test_cockpit_token_is_rendered_on_loopback_and_the_file_is_the_nodes_only():
    s = spec()
    config = kc.build_config(s, "172.21.0.10", cockpit_token="t0k3n-of-the-registry")
    assert config["cockpit"] == dict(port=8080, bind="127.0.0.1", auth_token="t0k3n-of-the-registry")
    data, mode = kc.node_files(s, "172.21.0.10", "t0k3n-of-the-registry")["/opt/knarr/knarr.toml"]
    assert mode == 0o600 and tomllib.loads(data.decode())["cockpit"]["auth_token"] == "t0k3n-of-the-registry"
    assert "t0k3n-of-the-registry" not in kc.redact_toml(data.decode())
    # Cockpit off: no token written, the file as before.
    off = spec(cockpit_port=0)
    assert "auth_token" not in kc.build_config(off, "172.21.0.10", cockpit_token="t")["cockpit"]


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "172.21.0.10", "10.0.0.1", "example.org", "", "[::1]"])
def test_cockpit_is_never_bound_beyond_loopback(bind):
    with pytest.raises(SpecError) as err:
        spec(cockpit_bind=bind)
    assert err.value.field == "cockpit_bind" and "loopback" in str(err.value)
    with pytest.raises(SpecError) as err:
        spec(config_overrides={"cockpit": {"bind": bind}})
    assert str(err.value).startswith("node 'alpha', field 'config_overrides.cockpit.bind': ")
    assert "loopback" in str(err.value)


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_cockpit_on_loopback_is_accepted(bind):
    assert kc.build_config(spec(config_overrides={"cockpit": {"bind": bind}}), "172.21.0.10")["cockpit"]["bind"] == bind
    assert spec(cockpit_bind=bind)["cockpit_bind"] == bind


@pytest.mark.parametrize("overrides, key", [
    ({"node": {"storage": "/var/lib/other/node.db"}}, "node.storage"),
    ({"node": {"storage": "../node.db"}}, "node.storage"),
    ({"node": {"storage": "~/node.db"}}, "node.storage"),
    ({"node": {"storage": "a/../../etc/node.db"}}, "node.storage"),
    ({"skills": {"echo": {"handler": "/usr/lib/python3/os.py:system"}}}, "skills.echo.handler"),
    ({"skills": {"evil": {"handler": "../../tmp/x.py:handle"}}}, "skills.evil.handler"),
    ({"network": {"tls_cert": "/etc/ssl/private/host.pem"}}, "network.tls_cert"),
    ({"network": {"tls_key": "../../root/key.pem"}}, "network.tls_key"),
    ({"cockpit": {"tls_key": "/etc/shadow"}}, "cockpit.tls_key"),
    ({"mail": {"spool_dir": "/var/spool"}}, "mail.spool_dir"),
    ({"plugins": {"paths": ["plugins", "/usr/local/lib"]}}, "plugins.paths"),
    ({"cockpit": {"auth_token": "mine"}}, "cockpit.auth_token"),
    ({"cockpit": "off"}, "cockpit"),
    ({"skills": {"echo": "none"}}, "skills.echo"),
])
def test_overrides_cannot_leave_the_nodes_directory_nor_take_what_the_collection_owns(overrides, key):
    with pytest.raises(SpecError) as err:
        spec(config_overrides=overrides)
    assert err.value.field == "config_overrides." + key and err.value.label == "alpha"
    assert str(err.value).startswith("node 'alpha', field 'config_overrides.%s': " % key)


def test_paths_inside_the_nodes_directory_are_fine():
    s = spec(config_overrides={"node": {"storage": "data/node.db"},
                               "skills": {"other": {"handler": "skills/other.py:handle"}},
                               "network": {"tls_cert": "/opt/knarr/tls/cert.pem", "tls_key": "tls/../tls/key.pem"},
                               "mail": {"spool_dir": "."}, "node_extra": {"description": "see /etc/motd"}})
    config = kc.build_config(s, "172.21.0.10")
    assert config["node"]["storage"] == "data/node.db" and config["network"]["tls_cert"] == "/opt/knarr/tls/cert.pem"
