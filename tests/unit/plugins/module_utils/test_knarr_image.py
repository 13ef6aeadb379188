"""knarr_image.py: a missing node image stops the run before anything changes, naming the nodes that need it."""

import pytest
from docker.errors import NotFound

from ansible_collections.fenrir.fleet.plugins.module_utils.errors import FleetError
from ansible_collections.fenrir.fleet.plugins.module_utils.knarr_image import check_present


class Api:
    """The one docker-py APIClient call the check makes."""

    def __init__(self, *present):
        self.present = {name: "sha256:%064d" % i for i, name in enumerate(present)}
        self.inspected = []

    def inspect_image(self, name):
        self.inspected.append(name)
        if name not in self.present:
            raise NotFound("no such image")
        return {"Id": self.present[name]}


def test_present_images_give_their_ids():
    api = Api("knarr-cluster-node:latest", "other:1")
    assert check_present(api, {"knarr-cluster-node:latest": ["a"], "other:1": ["b"]}) == {
        "knarr-cluster-node:latest": api.present["knarr-cluster-node:latest"], "other:1": api.present["other:1"]}


def test_missing_image_names_the_nodes_that_need_it():
    with pytest.raises(FleetError) as err:
        check_present(Api(), {"knarr-cluster-node:latest": ["b", "a", "a"]})
    assert str(err.value).startswith("nodes 'a', 'b', field 'image': knarr-cluster-node:latest not present")
    assert "nothing is ever pulled" in str(err.value)


def test_missing_images_without_users_name_the_field():
    with pytest.raises(FleetError, match=r"^field 'image': x:1, y:2 not present .* build them"):
        check_present(Api(), {"y:2": [], "x:1": []})


@pytest.mark.parametrize("name", ["", "bad image", 5])
def test_an_image_name_that_cannot_be_one_is_refused(name):
    with pytest.raises(FleetError, match="field 'image'"):
        check_present(Api(), {name: ["a"]})
