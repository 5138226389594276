"""What the agent refuses on sight: a command naming another place, objects it did not write."""

from __future__ import annotations

from typing import Any

import pytest

from libs.contracts.messages import RemoveCommand
from libs.contracts.naming import namespace_for
from services.data_plane_agent.domain import manifests, trust
from tests.unit.test_agent_manifests import DP, command, removal


def test_a_command_is_taken_where_its_org_project_and_environment_lead() -> None:
    assert trust.refusal(command(), DP) is None
    assert trust.refusal(removal(), DP) is None


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"namespace": "kube-system"}, "kube-system"),
        ({"namespace": namespace_for("acme", "shop", "staging")}, "lives in"),
        ({"dataplane_id": "dp_01jotherdataplane0000000000"}, "not this one"),
        ({"component": "API"}, "DNS label"),
        ({"component": "a" * 53}, "DNS label"),
        ({"component": "../etc"}, "DNS label"),
        ({"org": "acme/evil", "namespace": namespace_for("acme/evil", "shop", "production")}, "label value"),
    ],
)
def test_a_command_naming_another_place_is_refused(overrides: dict[str, Any], says: str) -> None:
    refused = trust.refusal(command(**overrides), DP)
    assert refused is not None
    assert says in refused
    where = {k: v for k, v in overrides.items() if k in RemoveCommand.model_fields}
    assert trust.refusal(removal().model_copy(update=where), DP) is not None


def test_only_objects_with_both_labels_are_this_data_plane_s() -> None:
    mine = manifests.deployment(command(), DP, pull=False).body
    assert trust.owned(mine, DP)
    assert not trust.owned(mine, "dp_01jotherdataplane0000000000")
    assert trust.landfall(mine)
    copied = {
        "metadata": {
            "labels": {k: v for k, v in mine["metadata"]["labels"].items() if k != "landfall.dev/dataplane"}
        }
    }
    assert not trust.owned(copied, DP)
    assert not trust.owned({"metadata": {"name": "by-hand"}}, DP)
    assert not trust.landfall({"metadata": {"name": "by-hand", "labels": {"app": "x"}}})


def test_a_guard_names_the_object_it_leaves_alone() -> None:
    check = trust.guard("CronJob", "kube-system", DP)
    with pytest.raises(trust.NotOwned) as refused:
        check({"metadata": {"name": "backup"}})
    assert "CronJob kube-system/backup" in str(refused.value)
    check(
        manifests.cronjob(command(component_type="scheduled-task", schedule="* * * * *"), DP, pull=False).body
    )
