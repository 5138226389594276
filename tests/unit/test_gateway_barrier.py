"""The revocation barrier: shared round trips, but never one sent before a request arrived."""

from __future__ import annotations

import asyncio

import pytest

from libs.runtime.broadcasts import BroadcastBarrier


class Flushes:
    """Stands in for the NATS PING/PONG: each flush is recorded and completes when released."""

    def __init__(self) -> None:
        self.started: list[asyncio.Event] = []
        self.failure: Exception | None = None

    async def __call__(self) -> None:
        done = asyncio.Event()
        self.started.append(done)
        await done.wait()
        if self.failure is not None:
            raise self.failure


async def test_requests_arriving_together_share_one_round_trip() -> None:
    barrier, flushes = BroadcastBarrier(), Flushes()
    waiters = [asyncio.create_task(barrier.wait(flushes)) for _ in range(10)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(flushes.started) == 1
    flushes.started[0].set()
    await asyncio.gather(*waiters)


async def test_a_request_arriving_during_a_round_trip_waits_for_the_next_one() -> None:
    barrier, flushes = BroadcastBarrier(), Flushes()
    first = asyncio.create_task(barrier.wait(flushes))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(flushes.started) == 1  # its PING is on the way
    late = asyncio.create_task(barrier.wait(flushes))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(flushes.started) == 2
    flushes.started[0].set()
    await first
    await asyncio.sleep(0)
    assert not late.done()  # the earlier PONG says nothing about what was published after it was sent
    flushes.started[1].set()
    await late


async def test_a_failed_round_trip_fails_every_request_that_waited_for_it() -> None:
    barrier, flushes = BroadcastBarrier(), Flushes()
    flushes.failure = TimeoutError("no PONG")
    waiters = [asyncio.create_task(barrier.wait(flushes)) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    flushes.started[0].set()
    for waiter in waiters:
        with pytest.raises(TimeoutError):
            await waiter
