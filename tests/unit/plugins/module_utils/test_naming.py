"""Labels and container names: the one place they are defined."""
import pytest

from ansible_collections.fenrir.fleet.plugins.module_utils import naming
from ansible_collections.fenrir.fleet.plugins.module_utils.errors import SpecError


@pytest.mark.parametrize("label", ["a", "0", "a-b", "node-01", "x" * 56, "a" + "-" * 54 + "b"])
def test_valid_labels(label):
    assert naming.validate_label(label) == label
    assert naming.is_valid_label(label)


@pytest.mark.parametrize("label", ["Alpha", "ALPHA", "a_b", "x" * 57, "-a", "a-", "", None, 5, "a b", "a.b",
                                   "\u00e6", "a\n", "fenrir/alpha"])
def test_invalid_labels(label):
    with pytest.raises(SpecError) as err:
        naming.validate_label(label)
    assert err.value.field == "label"
    assert "field 'label'" in str(err.value)
    assert not naming.is_valid_label(label)


@pytest.mark.parametrize("label", ["Old_Node", "node.1", "UPPER"])
def test_removal_accepts_what_an_older_tool_made(label):
    assert naming.validate_label(label, removal=True) == label
    with pytest.raises(SpecError):
        naming.validate_label(label)


def test_container_name():
    assert naming.container_name("alpha") == "fenrir-alpha"


def test_error_without_a_label_names_only_the_field():
    assert str(SpecError(None, "dry_run", "must be a boolean")) == "field 'dry_run': must be a boolean"
