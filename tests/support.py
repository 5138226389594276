"""Helpers every test tier shares: polling for an outcome, building a service's settings.

Tests poll for what a user would observe (a status, an object, a log line)
instead of sleeping for a fixed time: `eventually` returns as soon as the probe
answers something truthy and fails with what it was waiting for.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar
from unittest import mock

import pytest

from libs.contracts.messages import ComponentInfo

if TYPE_CHECKING:  # only the type: unit tests importing this module need no NATS client
    from libs.runtime.bus import Bus

T = TypeVar("T")
S = TypeVar("S")
H = TypeVar("H")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; that value is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or probe}")
        await asyncio.sleep(interval)  # the poll interval: the probe above is what is waited on


def wait_until(predicate: Callable[[], T | None], *, timeout: float = 30, what: str = "condition") -> T:
    """`eventually` for synchronous probes (e2e tests talking to processes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)  # the poll interval: the predicate above is what is waited on


def settings_from(cls: Callable[..., S], env: dict[str, str], **overrides: Any) -> S:
    """A service's settings as its process would read them from `env`, plus keyword overrides."""
    with mock.patch.dict(os.environ, env):
        return cls(**overrides)


def service_fixtures(
    cls: Callable[..., S], running: Callable[[S], AbstractAsyncContextManager[H]], *, name: str
) -> tuple[Any, Any]:
    """A service's two conftest fixtures: `settings` (`cls` read from `base_env`; a module
    overrides it by defining its own) and `name`, the service running with those settings.

    In a conftest: `settings, svc = service_fixtures(Settings, running, name="svc")`."""

    @pytest.fixture(name="settings")
    def settings(base_env: dict[str, str]) -> S:
        return settings_from(cls, base_env)

    @pytest.fixture(name=name)
    async def service(settings: S) -> AsyncIterator[H]:
        async with running(settings) as harness:
            yield harness

    return settings, service


def component_info(
    name: str = "api",
    *,
    org: str = "acme",
    project: str = "shop",
    host: str = "ghcr.io",
    repository: str | None = None,
) -> ComponentInfo:
    """What the orchestrator tells a gateway of a component (`acme/<name>` on ghcr.io unless told)."""
    return ComponentInfo(
        org=org,
        project=project,
        component=name,
        type="service",
        registry_id="reg_01hzzzzzzzzzzzzzzzzzzzzzzz",
        registry_host=host,
        repository=repository if repository is not None else f"acme/{name}",
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def drop_streams(bus: Bus) -> None:
    """Delete the bus's streams after a test; one it never made (or a cluster it broke) is passed over."""
    for spec in bus.subjects.streams:
        with contextlib.suppress(Exception):
            await bus.js.delete_stream(spec.name)
