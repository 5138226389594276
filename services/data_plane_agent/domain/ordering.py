"""Which command wins: the seq rules the agent applies before it writes (or deletes) anything.

The orchestrator numbers every deploy and removal of a component
(`landfall.dev/deployment-seq`); the agent compares that number with what the
cluster already holds, so that commands arriving late or twice change nothing:

- The primary object (Deployment, CronJob, job template ConfigMap, or a run's
  Job) is written last, so its seq says "this whole deploy is applied". A
  higher seq there means the command is old: `superseded`, nothing written. The
  same deployment id means a redelivery: nothing written, the rollout is
  watched and reported again.
- A run's Job is named after its execution; a Job of that name that belongs to
  another execution is a collision, not a redelivery (`job_name_taken`).
- No primary object may mean "never applied" or "removed": the tombstone a
  removal leaves carries the removal's seq and refuses older deploys.
- A removal deletes only what this data plane wrote for the component (both
  labels, `domain.trust.owned`) and nothing newer than itself (a component
  re-created under the same name may have deployed since).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from libs.contracts import reasons
from libs.contracts.messages import DeployCommand, RemoveCommand

from . import manifests, trust


@dataclass(frozen=True)
class Outcome:
    """What applying a deploy command decided (before any rollout is watched)."""

    action: Literal["applied", "redelivered", "superseded", "failed"]
    applied_at: datetime | None = None
    reason: str | None = None
    message: str | None = None


def against_primary(cmd: DeployCommand, current: Mapping[str, Any]) -> Outcome | None:
    """What the primary object already in the cluster says about `cmd`; None: write it."""
    mark = manifests.marker(current)
    if cmd.kind == "run":
        if mark.execution_id not in (None, cmd.execution_id):
            _, name = manifests.primary(cmd)
            return Outcome(
                "failed", reason=reasons.JOB_NAME_TAKEN, message=f"Job {name} belongs to another run"
            )
        return Outcome("redelivered")
    if mark.seq is not None and mark.seq > cmd.seq:
        return Outcome(
            "superseded", message=f"deployment {mark.deployment_id} (seq {mark.seq}) is already applied"
        )
    if mark.deployment_id == cmd.deployment_id:
        return Outcome("redelivered")
    return None


def against_tombstone(cmd: DeployCommand, tombstone: Mapping[str, Any] | None) -> Outcome | None:
    """A removal newer than `cmd` refuses it; None: write it."""
    removed = manifests.marker(tombstone).seq if tombstone is not None else None
    if removed is not None and removed > cmd.seq:
        return Outcome("superseded", message="the component was deleted after this deployment")
    return None


def removable(obj: Mapping[str, Any], cmd: RemoveCommand, dataplane_id: str) -> bool:
    """Is this object (listed by the component's labels) one that `cmd` should delete?"""
    if not trust.owned(obj, dataplane_id):  # made by hand, or by another data plane: never deleted
        return False
    mark = manifests.marker(obj)
    return mark.seq is None or mark.seq <= cmd.seq


def applied_after(cmd: RemoveCommand, objs: Iterable[Mapping[str, Any]], dataplane_id: str) -> str | None:
    """The deployment id (or seq) of an object of this data plane written after `cmd`, if any."""
    for obj in objs:
        mark = manifests.marker(obj)
        if trust.owned(obj, dataplane_id) and mark.seq is not None and mark.seq > cmd.seq:
            return mark.deployment_id or str(mark.seq)
    return None
