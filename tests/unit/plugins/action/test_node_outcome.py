"""fenrir.fleet.node_outcome: what a host reports for its node's outcome.

(That every host of a real play reports its own node -- the recap, a failed node a failed host -- is
tests/integration/test_provision.py and the AWX test's host summaries.)
"""

import pytest
from ansible.errors import AnsibleError

from ansible_collections.fenrir.fleet.plugins.action.node_outcome import report

RESULT = {"status": "running", "ip": "172.21.0.10", "server_id": "ab12", "provider": "fenrir-alpha"}


def outcome(**kw):
    return dict(dict(label="alpha", result=RESULT, changed=False, failed=False, reason=None), **kw)


def test_an_unchanged_node_is_an_ok_host_with_its_result():
    assert report(outcome()) == dict(changed=False, failed=False, node=RESULT, msg="node alpha: ok")


def test_a_changed_node_is_a_changed_host():
    got = report(outcome(changed=True))
    assert got["changed"] is True and got["failed"] is False and got["msg"] == "node alpha: changed"


@pytest.mark.parametrize("reason, says", [("container did not answer in 60 s", "container did not answer in 60 s"),
                                          (None, "failed (no reason given)")])
def test_a_failed_node_is_a_failed_host_naming_the_node_and_the_reason(reason, says):
    got = report(outcome(changed=True, failed=True, reason=reason, result=None))
    assert got == dict(changed=True, failed=True, node={}, msg="node alpha: " + says)


def test_no_outcome_is_a_skipped_host():
    got = report(None)
    assert got["skipped"] is True and got["changed"] is False


def test_an_outcome_without_its_fields_is_refused_naming_them():
    with pytest.raises(AnsibleError, match="without label, failed"):
        report({"changed": True})
