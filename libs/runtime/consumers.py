"""JetStream pull consumers, the way every service reads a durable stream.

What is subtle:

* A message is settled only after its effect is stored, so a crash means a
  redelivery; every handler must therefore be idempotent. `settle` is best
  effort: a lost ack means the message comes back and is recognised.
* `KeyedRunner` handles messages concurrently, but one at a time and in stream
  order per key (per component, per deployment, ...), and never holds more
  messages than it can finish within the ack wait.
* `pull_forever` survives NATS outages: a fetch that times out or meets a
  reconnect simply tries again; only cancellation stops it, and what was
  fetched but not settled is redelivered after the ack wait.
* `retry_or_drop` is for bugs: an unexpected error is retried a few times
  (it may be transient), then the message is terminated with a log line so a
  poison message does not come back forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Literal

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from libs.runtime.bus import Bus

log = logging.getLogger(__name__)

MessageHandler = Callable[[Msg], Awaitable[None]]
MessageKey = Callable[[Msg], Hashable]
Settlement = Literal["ack", "nak", "term", "in_progress"]

NAK_DELAY_SECONDS = 2.0
MAX_DELIVERIES_ON_ERROR = 5


def one_key(msg: Msg) -> Hashable:
    """All messages in one order."""
    return None


def json_key(*fields: str) -> MessageKey:
    """Order messages by these fields of their JSON body (unreadable bodies share one key)."""

    def key(msg: Msg) -> Hashable:
        try:
            body = json.loads(msg.data)
            return tuple(str(body.get(f)) for f in fields) if isinstance(body, dict) else None
        except ValueError:
            return None

    return key


async def settle(msg: Msg, action: Settlement, *, delay: float | None = None) -> None:
    """Ack, nak (after `delay` seconds; None: at once), term or +WPI; a failure is only logged."""
    try:
        if action == "ack":
            await msg.ack()
        elif action == "term":
            await msg.term()
        elif action == "in_progress":
            await msg.in_progress()
        else:
            await msg.nak(delay=delay)
    except (TimeoutError, nats.errors.Error) as exc:
        # Not settled means redelivered later; the handlers are idempotent.
        log.warning("could not settle message", extra={"action": action, "error": repr(exc)})


async def retry_or_drop(msg: Msg, what: str, ids: dict[str, str | None]) -> None:
    """An unexpected error: retry a few times (it may be transient), then stop redelivering."""
    delivered = msg.metadata.num_delivered if msg.reply else 1
    if delivered is not None and delivered >= MAX_DELIVERIES_ON_ERROR:
        log.exception(f"{what}: failed {delivered} times, dropped", extra=ids)
        await settle(msg, "term")
    else:
        log.exception(f"{what}: failed, will retry", extra=ids)
        await settle(msg, "nak", delay=NAK_DELAY_SECONDS)


class KeyedRunner:
    """Handle messages concurrently, but one at a time and in arrival order per key.

    At most `concurrency` handlers run at once; at most `held` messages are held
    (fetched, not yet settled), so a hot key queues without starving the others
    and the consumer never holds more than it can finish within the ack wait."""

    def __init__(self, handle: MessageHandler, *, key: MessageKey, concurrency: int, held: int) -> None:
        self._handle = handle
        self._key = key
        self._gate = asyncio.Semaphore(concurrency)
        self._held_max = max(held, concurrency)
        self._tails: dict[Hashable, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._room.set()

    def room(self) -> int:
        return self._held_max - len(self._tasks)

    async def wait_for_room(self) -> int:
        while self.room() <= 0:
            self._room.clear()
            await self._room.wait()
        return self.room()

    def submit(self, msg: Msg) -> None:
        key = self._key(msg)
        task = asyncio.create_task(self._run(self._tails.get(key), msg))
        self._tails[key] = task
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            if self._tails.get(key) is finished:
                del self._tails[key]
            self._room.set()

        task.add_done_callback(done)

    async def _run(self, before: asyncio.Task[None] | None, msg: Msg) -> None:
        if before is not None:
            await asyncio.wait({before})  # its outcome is its own; only the order matters here
        async with self._gate:
            try:
                await self._handle(msg)
            except Exception:  # the handlers settle their own errors; this is a bug in one
                log.exception("message handler failed", extra={"subject": msg.subject})

    async def cancel(self) -> None:
        """Stop: unsettled messages are redelivered after the ack wait (the handlers are idempotent)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def honour_cancellation() -> None:
    """Raise the cancellation that an `asyncio.wait_for` of Python 3.11 swallowed.

    In 3.11, a task cancelled just as the future it waits for completes (a fetch that got
    messages) gets the result and no CancelledError, so a loop never stops: a service's
    shutdown then hangs on its consumer. The request is still counted (`cancelling()`). Call it at
    the top of every fetch loop (`pull_forever`, the agent's own consumer)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def pull_forever(
    bus: Bus,
    *,
    stream: str,
    subject: str,
    durable: str,
    handle: MessageHandler,
    key: MessageKey = one_key,
    concurrency: int = 1,
    ack_wait: float = 60.0,
    batch: int = 16,
    fetch_timeout: float = 1.0,
) -> None:
    """Fetch from a durable pull consumer and hand each message to `handle`, until cancelled.

    Messages with the same `key` are handled one after another in stream order; up to
    `concurrency` with different keys at once (the default key puts all in one order)."""
    config = ConsumerConfig(
        durable_name=durable,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_ack_pending=1000,
        filter_subject=subject,
    )
    subscription = await bus.js.pull_subscribe(subject, durable=durable, stream=stream, config=config)
    runner = KeyedRunner(handle, key=key, concurrency=concurrency, held=max(batch, 4 * concurrency))
    try:
        while True:
            honour_cancellation()
            room = await runner.wait_for_room()
            try:
                messages = await subscription.fetch(batch=min(batch, room), timeout=fetch_timeout)
            except TimeoutError:
                # nats.errors.TimeoutError subclasses the builtin, which fetch also raises as such
                continue
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as exc:
                log.warning("consumer waiting for NATS", extra={"durable": durable, "error": repr(exc)})
                await asyncio.sleep(1.0)
                continue
            for msg in messages:
                runner.submit(msg)
    finally:
        await runner.cancel()
        try:
            await subscription.unsubscribe()
        except Exception:  # the connection may be gone at shutdown
            log.debug("unsubscribe failed", extra={"durable": durable})
