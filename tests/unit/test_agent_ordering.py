"""Which command wins against what the cluster holds: the agent's seq rules, without a cluster."""

from __future__ import annotations

from typing import Any

from libs.contracts.messages import DeployCommand, RemoveCommand, utcnow
from services.data_plane_agent.domain import manifests, ordering
from services.data_plane_agent.domain.rollout import Rollout, replaced
from tests.unit.test_agent_manifests import DP, command

NS = command().namespace


WHERE = ("dataplane_id", "org", "project", "component", "environment", "namespace")


def removal(seq: int) -> RemoveCommand:
    """The teardown of the component that `command()` deploys, in the same place."""
    where = command().model_dump(include=set(WHERE))
    return RemoveCommand(teardown_id="td_01jabcdefghjkmnpqrstvwxyz2", seq=seq, sent_at=utcnow(), **where)


def written_by(cmd: DeployCommand, dataplane_id: str = DP) -> dict[str, Any]:
    """The primary object as the agent wrote it for `cmd`."""
    return manifests.plan(cmd, dataplane_id, dockerconfigjson=None)[-1].body


def test_a_newer_deployment_already_applied_supersedes_an_older_command() -> None:
    newer = written_by(command(deployment_id="dep_01jabcdefghjkmnpqrstvwxy11", seq=11))
    decided = ordering.against_primary(command(seq=10), newer)
    assert decided is not None
    assert decided.action == "superseded"
    assert "seq 11" in (decided.message or "")


def test_the_same_deployment_again_is_a_redelivery_and_an_older_one_is_overwritten() -> None:
    cmd = command()
    redelivered = ordering.against_primary(cmd, written_by(cmd))
    assert redelivered is not None
    assert redelivered.action == "redelivered"
    older = written_by(command(deployment_id="dep_01jabcdefghjkmnpqrstvwxy06", seq=6))
    assert ordering.against_primary(cmd, older) is None


def test_a_job_of_another_run_is_a_name_collision_not_a_redelivery() -> None:
    run = command(
        component_type="manual-task", port=None, kind="run", execution_id="exe_01jabcdefghjkmnpqrstvwxyz3"
    )
    other = run.model_copy(update={"execution_id": "exe_02jabcdefghjkmnpqrstvwxyz3"})
    taken = ordering.against_primary(run, written_by(other))
    assert taken is not None
    assert (taken.action, taken.reason) == ("failed", "job_name_taken")
    same = ordering.against_primary(run, written_by(run))
    assert same is not None
    assert same.action == "redelivered"


def test_a_tombstone_refuses_only_deploys_older_than_the_removal() -> None:
    tomb = manifests.tombstone(removal(seq=20), DP).body
    stale = ordering.against_tombstone(command(seq=15), tomb)
    assert stale is not None
    assert stale.action == "superseded"
    assert ordering.against_tombstone(command(seq=21), tomb) is None
    assert ordering.against_tombstone(command(seq=1), None) is None


def test_a_removal_deletes_only_this_data_plane_s_objects_not_newer_than_itself() -> None:
    cmd = removal(seq=20)
    assert ordering.removable(written_by(command(seq=19)), cmd, DP)
    assert not ordering.removable(written_by(command(seq=21)), cmd, DP)
    assert not ordering.removable(written_by(command(seq=19), "dp_01jotherdataplane0000000000"), cmd, DP)
    # Made by hand (no labels), or with Landfall's labels copied but not this data plane's: kept.
    assert not ordering.removable({"metadata": {"name": "by-hand"}}, cmd, DP)
    copied = written_by(command(seq=19))
    del copied["metadata"]["labels"]["landfall.dev/dataplane"]
    assert not ordering.removable(copied, cmd, DP)


def test_a_watched_object_deleted_or_rewritten_by_another_deployment_ends_the_watch() -> None:
    cmd = command()
    target = Rollout.from_command(cmd, None)
    assert replaced(target, written_by(cmd)) is None
    gone = replaced(target, None)
    assert gone is not None
    assert (gone.status, gone.reason) == ("failed", "deleted")
    newer = replaced(target, written_by(command(deployment_id="dep_01jabcdefghjkmnpqrstvwxy11", seq=11)))
    assert newer is not None
    assert newer.status == "superseded"


def test_a_rollout_resumed_from_its_object_is_the_one_that_was_applied() -> None:
    cmd = command()
    resumed = Rollout.from_object("Deployment", written_by(cmd))
    assert resumed == Rollout.from_command(cmd, None)
    assert Rollout.from_object("Deployment", {"metadata": {"name": "api", "namespace": NS}}) is None
