"""How many `?wait=` long-polls each CI token holds open at once (per replica).

A long-poll costs a subscription and a connection for up to `long_poll_max_seconds`; without a
cap one token (a leaked one, or a CI loop gone wrong) could hold thousands. Beyond the cap the
poll is refused (429, retry after a second: slots free as polls finish); a slot is given back
however the poll ends, with an answer, an error, or the client gone (the handler watches for
that, since aiohttp does not cancel a handler whose client disconnected).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class TooManyPolls(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this CI token already holds {limit} long-polls (?wait=) open; wait for one to finish,"
            " or poll without ?wait="
        )
        self.detail = str(self)


class PollSlots:
    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self.held: dict[str, int] = {}

    @contextlib.contextmanager
    def slot(self, key: str) -> Iterator[None]:
        """Hold one of `key`'s slots for the block; `TooManyPolls` when all are taken."""
        if self.held.get(key, 0) >= self.per_key:
            raise TooManyPolls(self.per_key)
        self.held[key] = self.held.get(key, 0) + 1
        try:
            yield
        finally:
            left = self.held[key] - 1
            if left:
                self.held[key] = left
            else:
                del self.held[key]
