"""Tag resolution's bound (usecases/resolution.py): the control plane first, the data plane's agent
after a third of the bound, `registry_unreachable` at the bound, and no deferral reaching past it.

The credentials service, the agent and the store are fakes of our own ports; a deployment's age is
set through its `recorded_at`."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any, cast

import pytest

from libs.contracts import reasons
from libs.contracts.messages import ResolvedImage, ResolveInCluster, utcnow
from libs.runtime.bus import BusUnavailable
from libs.runtime.errors import DependencyUnavailable, Stalling, Waiting
from services.orchestrator.usecases.resolution import NOTE_IN_CLUSTER, Pinned, Resolution
from tests.records import COMPONENT, DEPLOYMENT, PLANE

BOUND = 90.0
RETRY = 2.0
DIGEST = "sha256:" + "c" * 64
UNREACHABLE = ResolvedImage(status="unreachable", detail="unreachable: cannot connect to ghcr.io")


class Credentials:
    def __init__(self, answer: ResolvedImage | Exception) -> None:
        self.answer = answer

    async def resolve(self, **_: Any) -> ResolvedImage:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def auth_type(self, **_: Any) -> str:
        return "anonymous"


class Agents:
    def __init__(self, answer: ResolvedImage | None) -> None:
        self.answer = answer
        self.asked: list[ResolveInCluster] = []

    async def resolve_in_cluster(self, request: ResolveInCluster, *, timeout: float) -> ResolvedImage:
        self.asked.append(request)
        if self.answer is None:
            raise BusUnavailable("no answer on the resolve subject: NoRespondersError")
        return self.answer


class Deployments:
    def __init__(self) -> None:
        self.digests: dict[str, str] = {}

    async def set_digest(self, deployment_id: str, digest: str) -> None:
        self.digests[deployment_id] = digest


class Store:
    def __init__(self) -> None:
        self.now = type("Repos", (), {"deployments": Deployments()})()


def resolution(credentials: Credentials, agents: Agents, store: Store | None = None) -> Resolution:
    return Resolution(
        store=cast(Any, store or Store()),
        credentials=cast(Any, credentials),
        agents=cast(Any, agents),
        retry_seconds=RETRY,
        max_retry_seconds=60.0,
        unreachable_seconds=BOUND,
    )


def aged(seconds: float, attempts: int = 3) -> Any:
    return dataclasses.replace(
        DEPLOYMENT, recorded_at=utcnow() - timedelta(seconds=seconds), attempts=attempts
    )


async def test_at_first_only_the_control_plane_is_asked_again_soon() -> None:
    agents = Agents(None)
    with pytest.raises(Waiting) as waiting:
        await resolution(Credentials(UNREACHABLE), agents).pin(aged(1.0), COMPONENT, PLANE)
    assert waiting.value.reason == reasons.REGISTRY_UNREACHABLE
    assert waiting.value.delay <= 20.0 - 1.0  # back no later than when the agent is to be asked
    assert agents.asked == []


@pytest.mark.parametrize("age", [0.0, 10.0, 25.0, 50.0, 80.0, 85.0])
async def test_no_deferral_reaches_past_the_bound(age: float) -> None:
    agents = Agents(None)
    with pytest.raises(Waiting) as waiting:
        await resolution(Credentials(UNREACHABLE), agents).pin(aged(age, attempts=10), COMPONENT, PLANE)
    assert age + waiting.value.delay <= BOUND - RETRY
    assert (len(agents.asked) == 1) == (age >= 20.0)


async def test_at_the_bound_it_fails_saying_what_was_tried_on_both_sides() -> None:
    agents = Agents(None)
    with pytest.raises(Stalling) as stalled:
        await resolution(Credentials(UNREACHABLE), agents).pin(aged(BOUND - 1, attempts=6), COMPONENT, PLANE)
    assert stalled.value.reason == reasons.REGISTRY_UNREACHABLE
    assert stalled.value.message == (
        "control plane: 7 attempt(s), the last one: unreachable: cannot connect to ghcr.io; "
        "data plane dp_x: its agent gave no answer (no answer on the resolve subject: NoRespondersError)"
    )
    assert agents.asked[0].image == "ghcr.io/acme/api:1.0"


async def test_a_digest_the_agent_resolves_is_pinned_with_a_note() -> None:
    store = Store()
    agents = Agents(ResolvedImage(status="resolved", digest=DIGEST))
    pinned = await resolution(Credentials(UNREACHABLE), agents, store).pin(aged(30.0), COMPONENT, PLANE)
    assert pinned == Pinned(f"ghcr.io/acme/api@{DIGEST}", note=NOTE_IN_CLUSTER)
    assert store.now.deployments.digests == {"dep_x": DIGEST}


async def test_a_credentials_service_that_does_not_answer_is_retried_then_bounded_too() -> None:
    silent = Credentials(DependencyUnavailable("credentials service: timeout"))
    with pytest.raises(Waiting) as waiting:
        await resolution(silent, Agents(None)).pin(aged(1.0), COMPONENT, PLANE)
    assert (waiting.value.reason, waiting.value.delay) == (reasons.CREDENTIALS_UNAVAILABLE, RETRY)
    with pytest.raises(Stalling) as stalled:
        await resolution(silent, Agents(None)).pin(aged(BOUND), COMPONENT, PLANE)
    assert stalled.value.reason == reasons.REGISTRY_UNREACHABLE
    assert "the credentials service did not answer" in stalled.value.message
