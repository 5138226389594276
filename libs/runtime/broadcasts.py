"""Invalidations that reach every replica "at once", and the barrier that makes "at once" true.

A replica caches what others may change (CI tokens, components, signing state,
org API keys) in `BroadcastCache`s. Whoever changes the truth `announce`s it on
core NATS; every replica `listen`s and forgets the entry. Core NATS is fast but
asynchronous, so a request that arrives right after the admin's 204 could still
be served from a stale entry on another replica. `sync()` closes that gap:

* A PING on our connection is answered (PONG) after every message the server
  queued for us before it, and nats-py schedules the subscription callbacks for
  those messages before it wakes the flush. So once a flush *sent after the
  request arrived* returns, every broadcast published (and flushed) before the
  request arrived has been applied: revoked means revoked for the very next
  request on any replica, at the cost of one round trip.
* Requests share round trips (`BroadcastBarrier`): those that arrive while no
  PING is on its way join the next one, which is sent only after all of them
  arrived; a request arriving while a PING is already out waits for the next.
* If the round trip fails, nothing says which broadcasts were missed, so every
  registered cache is emptied; while disconnected, the caches bypass
  themselves (their epoch is None) and `sync()` has nothing to wait for.

Use: `broadcasts.register(cache)` for each cache, `listen(subject, Model,
apply)` at start (an entry point), `announce(subject, message)` after a change
is committed, and `await broadcasts.sync()` before a request trusts a cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ValidationError

from libs.runtime.bus import Bus
from libs.runtime.cache import BroadcastCache

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound=BroadcastCache[Any, Any])


class BroadcastBarrier:
    """One round trip shared by the requests waiting for broadcasts, never one sent before they came."""

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


class Broadcasts:
    """A replica's side of the broadcasts: announce, listen, and `sync()` before trusting a cache."""

    def __init__(self, bus: Bus, *, sync_timeout: int = 1, announce_timeout: int = 2) -> None:
        self.bus = bus
        self.sync_timeout = sync_timeout
        self.announce_timeout = announce_timeout
        self.barrier = BroadcastBarrier()
        self._caches: list[BroadcastCache[Any, Any]] = []
        self._subs: list[Subscription] = []

    def register(self, cache: C) -> C:
        """Have `sync()` empty `cache` when it cannot vouch for it."""
        self._caches.append(cache)
        return cache

    def clear(self) -> None:
        for cache in self._caches:
            cache.clear()

    async def announce(self, subject: str, message: BaseModel) -> None:
        """Tell every replica now; the flush pushes it to the server before we answer the caller."""
        await self.bus.publish(subject, message)
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self.bus.nc.flush(timeout=self.announce_timeout)

    async def listen(self, subject: str, model: type[M], apply: Callable[[M], None]) -> None:
        """Call `apply` with every `model` broadcast on `subject` (a malformed one is logged and dropped)."""

        async def on_message(msg: Msg) -> None:
            try:
                message = model.model_validate_json(msg.data)
            except ValidationError:
                log.warning("ignored a malformed broadcast", extra={"subject": subject})
                return
            apply(message)

        self._subs.append(await self.bus.nc.subscribe(subject, cb=on_message))

    async def ready(self) -> None:
        """Return once the server has our subscriptions (nothing announced after this is missed)."""
        await self.bus.nc.flush(timeout=5)

    async def sync(self) -> None:
        """Apply every broadcast published before this call; empty the caches if that cannot be known."""
        if not self.bus.connected:
            return  # the caches bypass themselves while disconnected
        try:
            await self.barrier.wait(lambda: self.bus.nc.flush(timeout=self.sync_timeout))
        except (nats.errors.Error, TimeoutError):
            self.clear()

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        self._subs.clear()
