"""The JetStream streams every service ensures at start, against a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.js.api import StreamConfig

from libs.contracts.subjects import MAX_DATAPLANES, Subjects
from libs.devstack.servers import NatsServer
from libs.runtime import bus as busmod
from libs.runtime.settings import ServiceSettings
from tests.support import drop_streams


@pytest.fixture
async def bus(nats_server: NatsServer, bus_prefix: str) -> AsyncIterator[busmod.Bus]:
    nc = await busmod.connect(ServiceSettings(nats_url=nats_server.url), name="test-streams")
    b = busmod.Bus(nc, Subjects(bus_prefix))
    try:
        yield b
    finally:
        await drop_streams(b)
        await nc.close()


@pytest.mark.timeout(300)
async def test_more_than_a_thousand_data_planes_each_get_their_consumer(bus: busmod.Bus) -> None:
    await busmod.ensure_streams(bus.js, bus.subjects.streams)
    stream = bus.subjects.dataplane_stream.name
    planes = [f"dp_{i:05d}" for i in range(1001)]  # nats-server 2.15's default cap is 1,000 per stream
    for start in range(0, len(planes), 50):
        await asyncio.gather(
            *(
                bus.js.add_consumer(stream, config=busmod.agent_consumer_config(bus.subjects, dp))
                for dp in planes[start : start + 50]
            )
        )
    info = await bus.js.stream_info(stream)
    assert info.state.consumer_count == len(planes)


async def test_a_stream_made_by_an_older_version_gets_the_data_plane_limit(bus: busmod.Bus) -> None:
    spec = bus.subjects.dataplane_stream
    await bus.js.add_stream(StreamConfig(name=spec.name, subjects=list(spec.subjects)))
    await busmod.ensure_streams(bus.js, bus.subjects.streams)
    info = await bus.js.stream_info(spec.name)
    assert info.config.max_consumers == MAX_DATAPLANES
