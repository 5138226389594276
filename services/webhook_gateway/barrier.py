"""One NATS round trip shared by the requests waiting for broadcasts to be applied.

`api._sync_with_broadcasts` needs, per CI request, a PING/PONG on the gateway's NATS
connection sent *after* the request arrived: its PONG comes after every message the
server queued for us before it (revocations, component changes). Requests that arrive
while no PING is on its way join the next one instead of each sending their own: the
PING is sent only after all of them arrived (the sending task clears the slot as its
first step, so a request arriving later starts the following PING), which is all the
guarantee asks for. Under load one round trip serves many requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class BroadcastBarrier:
    def __init__(self) -> None:
        self._next: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def wait(self, flush: Callable[[], Awaitable[None]]) -> None:
        """Return once a `flush` started after this call has completed (raising what it raised)."""
        pending = self._next
        if pending is None:
            pending = self._next = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._run(pending, flush))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.shield(pending)

    async def _run(self, pending: asyncio.Future[None], flush: Callable[[], Awaitable[None]]) -> None:
        self._next = None  # whoever comes after this point needs the next round trip
        try:
            await flush()
        except asyncio.CancelledError:
            pending.cancel()
            raise
        except Exception as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved here: every waiter may have gone
        else:
            pending.set_result(None)
