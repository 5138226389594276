"""The management API of the stack's three HTTP services, the way a careful client talks to it.

It speaks with the credential a user would hold: `Admin.for_stack` takes the stack's org key
(`LANDFALL_ORG_KEY`, owner of org `default`); `platform=True` takes the admin token, for what
only the platform does (creating orgs and their first owner key).

One client for both harnesses: the benchmarks provision through it
(`bench/provision.py`) and so does every part of `make chaos`. Why in `bench/`:
the two harnesses must not import each other both ways, and `bench` is the
lower of the two (it imports nothing from `chaos`; `chaos` imports this module
only). `libs/` is for what the services and their tests share, and the top
level of the repository is fixed, so neither is the place for a test client.

`Admin.call` retries a 503 after its Retry-After (a dependency is catching up)
and a dropped connection (the service was just restarted), for at most
`patience` seconds; any other unexpected answer is an `ApiError` at once, and a
5xx other than 503 is always one. Concurrency is bounded by one semaphore per
client, so provisioning hundreds of components does not open hundreds of
connections on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp

SERVICES = ("credentials", "orchestrator", "webhook_gateway")


class ApiError(RuntimeError):
    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class HasUrls(Protocol):
    """What `Admin.for_stack` needs of a stack (`libs.devstack.stack.Stack` has it)."""

    admin_token: str
    org_key: str | None

    def url(self, service: str) -> str: ...


def urls_of(stack: HasUrls) -> dict[str, str]:
    return {s: stack.url(s) for s in SERVICES}


def retry_after(headers: Any, default: float = 1.0) -> float:
    """The Retry-After of an answer in seconds, kept between 0.05 and 10 (`default` if absent or odd)."""
    try:
        return max(0.05, min(float(headers.get("Retry-After", default)), 10.0))
    except (TypeError, ValueError):
        return default


async def read_body(resp: aiohttp.ClientResponse) -> Any:
    """JSON if the body is JSON, its text otherwise, None if empty: an error body is never lost."""
    raw = await resp.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


class Admin:
    """The management API of the three HTTP services over one session, with one credential."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        urls: dict[str, str],
        token: str,
        concurrency: int = 16,
        patience: float = 120.0,
    ) -> None:
        self.session = session
        self.urls = urls
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}
        self.gate = asyncio.Semaphore(concurrency)
        self.patience = patience

    @classmethod
    def for_stack(
        cls, session: aiohttp.ClientSession, stack: HasUrls, *, platform: bool = False, **options: Any
    ) -> Admin:
        """As the owner of org `default` (the org key), or as the platform (`platform=True`)."""
        token = stack.admin_token if platform or not stack.org_key else stack.org_key
        return cls(session, urls=urls_of(stack), token=token, **options)

    def with_token(self, token: str) -> Admin:
        """The same client (session, addresses, patience) speaking with another credential."""
        return Admin(self.session, urls=self.urls, token=token, patience=self.patience)

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        expect: Sequence[int] = (200, 201, 202, 204),
    ) -> Any:
        url = self.urls[service] + path
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        while True:
            wait = 0.5
            try:
                async with (
                    self.gate,
                    self.session.request(
                        method, url, json=body, headers=self.headers, timeout=aiohttp.ClientTimeout(total=30)
                    ) as resp,
                ):
                    payload = await read_body(resp)
                    if resp.status in expect:
                        return payload
                    if resp.status != 503:
                        raise ApiError(
                            f"{method} {path} answered {resp.status}: {payload}",
                            status=resp.status,
                            body=payload,
                        )
                    wait = retry_after(resp.headers)
            except (aiohttp.ClientConnectionError, TimeoutError):
                pass
            if loop.time() + wait > deadline:
                raise ApiError(
                    f"{method} {path}: no answer but 503 or a dropped connection for {self.patience:g} s"
                )
            await asyncio.sleep(wait)
