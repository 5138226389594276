"""The orchestrator's consumers under load: concurrent across components, in order within one.

Real NATS (JetStream) and PostgreSQL; the credentials service is played by the test.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from nats.aio.msg import Msg

from libs.contracts.messages import AgentHeartbeat, ImagePushed
from libs.runtime.consumers import json_key, pull_forever
from tests.integration.orchestrator.helpers import (
    DIGEST_1_0,
    DIGEST_1_1,
    IMAGE_1_0,
    IMAGE_1_1,
    PINNED_1_0,
    now,
    running_orchestrator,
)
from tests.support import eventually

IMAGES = (IMAGE_1_0, IMAGE_1_1)


async def test_interleaved_pushes_keep_each_components_order_and_dispatch_once(
    base_env: dict[str, str],
) -> None:
    async with running_orchestrator(base_env, consumer_concurrency=8) as orch:
        orch.credentials.add_tag("1.0", DIGEST_1_0)
        orch.credentials.add_tag("1.1", DIGEST_1_1)
        worlds = [await orch.provision(org=f"org{i}") for i in range(4)]
        pushed: dict[str, list[str]] = {w.org: [] for w in worlds}
        for round_ in range(6):
            for world in worlds:
                pushed[world.org].append(await orch.push(world, IMAGES[round_ % 2]))
        for world in worlds:
            await orch.wait_status(pushed[world.org][-1], "dispatched")

        for world in worlds:
            history = await orch.ok("GET", world.component_path + "/deployments")
            # Recorded in push order: newest first is the reverse, and only the last one survives.
            assert [d["id"] for d in history["items"]] == pushed[world.org][::-1]
            assert {d["status"] for d in history["items"][1:]} == {"superseded"}
        sent = Counter(c.deployment_id for _, c in orch.commands if c.kind == "deploy")
        assert sent
        assert max(sent.values()) == 1


async def test_consumer_keeps_going_through_every_kind_of_fetch_timeout(base_env: dict[str, str]) -> None:
    """nats-py's fetch raises nats' TimeoutError or the builtin one; neither may stop the consumer."""
    async with running_orchestrator(base_env) as orch:
        bus = orch.bus
        seen: list[tuple[str, str]] = []
        timeouts: Counter[str] = Counter()  # fetches that timed out, by the exception's class
        subscribe = bus.js.pull_subscribe

        async def counted_subscribe(*args: Any, **kwargs: Any) -> Any:
            """The real subscription, its fetches counted as they time out (in either flavour)."""
            subscription = await subscribe(*args, **kwargs)
            fetch = subscription.fetch

            async def counted_fetch(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await fetch(*args, **kwargs)
                except TimeoutError as exc:
                    timeouts[f"{type(exc).__module__}.{type(exc).__name__}"] += 1
                    raise

            subscription.fetch = counted_fetch  # type: ignore[method-assign]
            return subscription

        async def handle(msg: Msg) -> None:
            event = ImagePushed.model_validate_json(msg.data)
            seen.append((event.component, event.deployment_id))
            await msg.ack()

        bus.js.pull_subscribe = counted_subscribe  # type: ignore[method-assign]
        consumer = asyncio.create_task(
            pull_forever(
                bus,
                stream=bus.subjects.intake_stream.name,
                subject=bus.subjects.image_pushed,
                durable="test-timeouts",
                handle=handle,
                key=json_key("component"),
                concurrency=4,
                fetch_timeout=0.02,  # most fetches time out, in either flavour (1 ms starved it under load)
            )
        )
        try:

            async def timed_out_often() -> bool | None:
                assert not consumer.done(), consumer.exception()
                # nats' own flavour is most of them; the builtin one (the client's timer first) is rarer
                return True if timeouts.total() >= 20 else None

            await eventually(timed_out_often, timeout=30, what="20 fetches timed out")
            assert not consumer.done(), consumer.exception()
            ids = []
            for i in range(20):
                event = ImagePushed(
                    deployment_id=f"dep_{i:026d}",
                    org="acme",
                    project="shop",
                    component=f"c{i % 3}",
                    image=IMAGES[0],
                    accepted_at=now(),
                    token_prefix="lfci_test",
                )
                await bus.publish_durable(bus.subjects.image_pushed, event, msg_id=event.deployment_id)
                ids.append((event.component, event.deployment_id))

            async def all_seen() -> bool | None:
                return True if len(seen) >= len(ids) else None

            await eventually(all_seen, what="every event handled")
            assert not consumer.done()
            for component in ("c0", "c1", "c2"):
                assert [d for c, d in seen if c == component] == [d for c, d in ids if c == component]
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)


async def test_an_anonymous_registry_needs_no_pull_secret(base_env: dict[str, str]) -> None:
    async with running_orchestrator(base_env) as orch:
        orch.credentials.add_tag("1.0", DIGEST_1_0)
        world = await orch.provision(auth_type="anonymous")
        first = await orch.push(world, IMAGES[0])
        second = await orch.push(world, IMAGES[0])
        for deployment_id in (first, second):
            command = await orch.command_for(deployment_id)
            assert command.pull_secret is None
            assert command.image == PINNED_1_0
        assert orch.credentials.pull_requests == []


async def test_heartbeats_are_written_when_something_changes_not_every_time(
    base_env: dict[str, str],
) -> None:
    async with running_orchestrator(base_env, heartbeat_write_seconds=60.0) as orch:
        await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
        a = await orch.ok("POST", "/v1/orgs/acme/dataplanes", {"name": "a"}, 201)
        b = await orch.ok("POST", "/v1/orgs/acme/dataplanes", {"name": "b"}, 201)

        async def beat(plane: dict[str, Any], version: str) -> None:
            message = AgentHeartbeat(dataplane_id=plane["id"], version=version, sent_at=now())
            await orch.bus.publish(orch.subjects.heartbeat(plane["id"]), message)

        async def agent(plane: dict[str, Any], version: str) -> dict[str, Any] | None:
            found: dict[str, Any] = (await orch.ok("GET", f"/v1/orgs/acme/dataplanes/{plane['id']}"))["agent"]
            return found if found["connected"] and found["version"] == version else None

        await beat(a, "1.0")
        first = await eventually(lambda: agent(a, "1.0"), what="a's first heartbeat, stored at once")
        await beat(a, "1.0")  # within the write interval: nothing to store
        await beat(b, "1.0")  # heartbeats are handled in order: once b shows, a's second one was seen
        await eventually(lambda: agent(b, "1.0"), what="b's first heartbeat")
        assert (await agent(a, "1.0")) == first

        await beat(a, "1.1")  # a new agent version is stored at once
        upgraded = await eventually(lambda: agent(a, "1.1"), what="a's new version")
        assert upgraded["last_seen"] > first["last_seen"]
