"""A per-replica cache that broadcasts keep honest, instead of a time to live.

Used wherever a replica caches what another replica (or service) may change:
CI tokens, components, signing state, and later API keys. The rules:

* **Invalidation is pushed.** Whoever changes the truth broadcasts it (core
  NATS); every replica calls `forget`/`forget_where`/`clear` on receipt.
* **A racing read cannot resurrect an entry.** A fill takes a `ticket()` before
  it reads the truth and `put` stores only if no invalidation happened since
  (a generation count), so a revocation that arrived during the read wins.
* **A missed broadcast cannot pin stale data.** The cache is trusted only while
  the bus is connected, and only since the last reconnect: `epoch()` returns
  None while disconnected (the cache is bypassed) and another number after each
  reconnect (the cache is emptied).
* `max_age` is only a backstop; `max_entries` bounds memory (oldest out first).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BroadcastCache(Generic[K, V]):
    def __init__(
        self,
        *,
        epoch: Callable[[], int | None],
        max_entries: int = 10_000,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.epoch = epoch
        self.max_entries = max_entries
        self.max_age = max_age
        self.clock = clock
        self._entries: dict[K, tuple[V, float]] = {}
        self._epoch: int | None = None
        self._generation = 0

    def usable(self) -> bool:
        """Whether entries may be trusted now (connected, and emptied since the last reconnect)."""
        epoch = self.epoch()
        if epoch != self._epoch:
            self.clear()
            self._epoch = epoch
        return epoch is not None

    def get(self, key: K) -> V | None:
        if not self.usable():
            return None
        found = self._entries.get(key)
        if found is None:
            return None
        if self.max_age is not None and self.clock() - found[1] >= self.max_age:
            return None
        return found[0]

    def ticket(self) -> int:
        """Take before reading the truth; hand to `put`."""
        self.usable()  # a reconnect noticed later must not void this ticket, only earlier entries
        return self._generation

    def put(self, key: K, value: V, ticket: int) -> bool:
        """Store unless the cache is unusable or something was invalidated since `ticket`."""
        if not self.usable() or ticket != self._generation:  # a reconnect since `ticket` clears first
            return False
        if key not in self._entries and len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (value, self.clock())
        return True

    def forget(self, key: K) -> None:
        self._generation += 1
        self._entries.pop(key, None)

    def forget_where(self, predicate: Callable[[V], bool]) -> None:
        self._generation += 1
        for key in [k for k, (v, _) in self._entries.items() if predicate(v)]:
            del self._entries[key]

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
