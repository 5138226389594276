"""The broadcast-invalidated cache: what a revocation or a reconnect does to what a replica trusts."""

from __future__ import annotations

from libs.runtime.cache import BroadcastCache


class Link:
    def __init__(self) -> None:
        self.connected = True
        self.reconnects = 0

    def epoch(self) -> int | None:
        return self.reconnects if self.connected else None


def test_a_read_that_raced_with_an_invalidation_is_not_stored() -> None:
    link = Link()
    cache: BroadcastCache[str, str] = BroadcastCache(epoch=link.epoch)
    ticket = cache.ticket()  # a lookup starts...
    cache.forget_where(lambda v: v == "tok_1")  # ...a revocation arrives meanwhile...
    assert not cache.put("digest", "tok_1", ticket)  # ...so what the lookup read is not trusted
    assert cache.get("digest") is None


def test_entries_are_bypassed_while_disconnected_and_dropped_after_a_reconnect() -> None:
    link = Link()
    cache: BroadcastCache[str, str] = BroadcastCache(epoch=link.epoch)
    assert cache.put("a", "1", cache.ticket())
    assert cache.get("a") == "1"
    link.connected = False
    assert cache.get("a") is None
    assert not cache.put("b", "2", cache.ticket())
    link.connected, link.reconnects = True, 1  # broadcasts may have been missed meanwhile
    assert cache.get("a") is None
    assert len(cache) == 0


def test_max_age_and_max_entries_bound_what_is_kept() -> None:
    now = [0.0]
    cache: BroadcastCache[str, int] = BroadcastCache(
        epoch=lambda: 0, max_entries=2, max_age=10.0, clock=lambda: now[0]
    )
    for i, key in enumerate("abc"):
        cache.put(key, i, cache.ticket())
    assert cache.get("a") is None  # the oldest made room
    assert cache.get("c") == 2
    now[0] = 10.0
    assert cache.get("c") is None
