"""HTTP to the stack's public APIs, the way a careful client talks to it (aiohttp, bounded concurrency).

`Admin.call` retries a 503 (a dependency is catching up, the answer says so with
Retry-After) and a dropped connection (the service was just restarted); any
other unexpected answer is an error, and a 5xx other than 503 is always one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import aiohttp

SERVICES = ("credentials", "orchestrator", "webhook_gateway")


class ApiError(RuntimeError):
    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def retry_after(headers: Any, default: float = 1.0) -> float:
    try:
        return max(0.05, min(float(headers.get("Retry-After", default)), 10.0))
    except (TypeError, ValueError):
        return default


async def read_body(resp: aiohttp.ClientResponse) -> Any:
    raw = await resp.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


class Admin:
    """The admin API of the three HTTP services over one session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        urls: dict[str, str],
        admin_token: str,
        concurrency: int = 16,
        patience: float = 120.0,
    ) -> None:
        self.session = session
        self.urls = urls
        self.headers = {"Authorization": f"Bearer {admin_token}"}
        self.gate = asyncio.Semaphore(concurrency)
        self.patience = patience

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
