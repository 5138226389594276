"""`Bus.serve` returns only once nats-server has the responder, against a real nats-server.

An agent (or any service) answers requests from the moment it has started; a request sent
right after `serve()` returned used to meet "no responders" while the SUB still sat in the
client's buffer (seen under `make stress`)."""

from __future__ import annotations

from pydantic import BaseModel

from libs.contracts.subjects import Subjects
from libs.devstack.servers import NatsServer
from libs.runtime import bus as busmod
from libs.runtime.settings import ServiceSettings


class Ping(BaseModel):
    n: int


async def test_a_request_right_after_serve_returns_is_answered(
    nats_server: NatsServer, bus_prefix: str
) -> None:
    settings = ServiceSettings(nats_url=nats_server.url)
    server_nc = await busmod.connect(settings, name="test-serving")
    client_nc = await busmod.connect(settings, name="test-asking")
    serving = busmod.Bus(server_nc, Subjects(bus_prefix))
    asking = busmod.Bus(client_nc, Subjects(bus_prefix))

    async def echo(request: Ping) -> Ping:
        return request

    try:
        missed = []
        for n in range(300):  # unflushed, most of these missed on a loaded machine
            subject = f"{bus_prefix}serve-test.{n}"
            await serving.serve(subject, Ping, echo, queue="serve-test")
            try:
                answer = await asking.request(subject, Ping(n=n), Ping, timeout=10)
            except busmod.BusUnavailable as exc:
                missed.append(f"{n}: {exc}")
            else:
                assert answer.n == n
        assert missed == []
    finally:
        await server_nc.close()
        await client_nc.close()
