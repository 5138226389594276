"""The token cache: fast for known tokens, but never trusted past a revocation, an expiry or a reconnect."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from libs.runtime.cache import BroadcastCache
from libs.runtime.errors import DomainError, ProblemError
from services.webhook_gateway.domain.records import Binding, TokenRow
from services.webhook_gateway.domain.tokens import generate_token, token_hash, token_prefix
from services.webhook_gateway.usecases.authentication import CachedToken, TokenAuthenticator


class FakeRepo:
    """Our own repository port, in memory."""

    def __init__(self) -> None:
        self.rows: dict[bytes, TokenRow] = {}
        self.lookups = 0
        self.touches = 0
        self.pause: asyncio.Event | None = None

    def add(self, token: str, **fields: Any) -> TokenRow:
        row = TokenRow(
            id=f"tok_{len(self.rows)}",
            binding=Binding("o", "p", "c"),
            name="",
            token_prefix=token_prefix(token),
            token_sha256=token_hash(token),
            created_at=datetime.now(UTC),
            expires_at=fields.get("expires_at"),
            revoked_at=fields.get("revoked_at"),
            last_used_at=None,
        )
        self.rows[row.token_sha256] = row
        return row

    def revoke(self, row: TokenRow) -> None:
        self.rows[row.token_sha256] = dataclasses.replace(row, revoked_at=datetime.now(UTC))

    async def by_hash(self, digest: bytes) -> TokenRow | None:
        self.lookups += 1
        if self.pause is not None:
            await self.pause.wait()
        return self.rows.get(digest)

    async def touch(
        self, token_id: str, *, min_interval: timedelta
    ) -> tuple[datetime | None, datetime | None]:
        self.touches += 1
        row = next(r for r in self.rows.values() if r.id == token_id)
        return row.revoked_at, row.expires_at


class RenderedAuth:
    """The authenticator, with its refusals rendered as the CI endpoints render them (a 401 problem)."""

    def __init__(self, auth: TokenAuthenticator) -> None:
        self.auth = auth

    def revoked(self, token_id: str) -> None:
        self.auth.revoked(token_id)

    async def authenticate(self, token: str) -> TokenRow:
        try:
            return await self.auth.authenticate(token)
        except DomainError as exc:
            raise ProblemError.from_domain(exc) from exc


class Env:
    def __init__(self) -> None:
        self.repo = FakeRepo()
        self.epoch: int | None = 0
        self.mono = 0.0
        self.now = datetime(2030, 1, 1, tzinfo=UTC)
        registry = CollectorRegistry()
        cache: BroadcastCache[bytes, CachedToken] = BroadcastCache(epoch=lambda: self.epoch)
        self.auth = RenderedAuth(
            TokenAuthenticator(
                self.repo,  # type: ignore[arg-type]
                cache=cache,
                touch_interval=60,
                checks=Counter("checks", "", ["result"], registry=registry),
                lookups=Counter("lookups", "", registry=registry),
                clock=lambda: self.mono,
                now=lambda: self.now,
            )
        )

    async def cached_token(self, **fields: Any) -> tuple[str, TokenRow]:
        """A new token in the repository (`fields` as `FakeRepo.add`), authenticated once: now cached."""
        token = generate_token()
        row = self.repo.add(token, **fields)
        await self.auth.authenticate(token)
        return token, row


@pytest.fixture
def env() -> Env:
    return Env()


async def test_known_tokens_are_served_from_memory(env: Env) -> None:
    token = generate_token()
    env.repo.add(token)
    for _ in range(5):
        await env.auth.authenticate(token)
    assert env.repo.lookups == 1
    assert env.repo.touches == 1  # last_used_at at most once a minute
    env.mono += 61
    await env.auth.authenticate(token)
    assert env.repo.touches == 2


async def test_revocation_drops_the_cached_token(env: Env) -> None:
    token, row = await env.cached_token()
    env.repo.revoke(row)
    env.auth.revoked(row.id)
    with pytest.raises(ProblemError) as info:
        await env.auth.authenticate(token)
    assert info.value.status == 401


async def test_a_missed_revocation_is_caught_by_the_periodic_touch(env: Env) -> None:
    token, row = await env.cached_token()
    env.repo.revoke(row)  # no broadcast arrived
    env.mono += 61
    with pytest.raises(ProblemError):
        await env.auth.authenticate(token)


async def test_a_cached_token_expires_on_time(env: Env) -> None:
    token, _ = await env.cached_token(expires_at=env.now + timedelta(hours=1))
    env.now += timedelta(hours=1, seconds=1)
    with pytest.raises(ProblemError) as info:
        await env.auth.authenticate(token)
    assert "expired" in info.value.detail


async def test_cache_is_bypassed_while_disconnected_and_emptied_after_a_reconnect(env: Env) -> None:
    token, _ = await env.cached_token()
    env.epoch = None  # disconnected: broadcasts could be missed
    await env.auth.authenticate(token)
    await env.auth.authenticate(token)
    assert env.repo.lookups == 3
    env.epoch = 1  # reconnected
    await env.auth.authenticate(token)
    await env.auth.authenticate(token)
    assert env.repo.lookups == 4


async def test_a_revocation_during_a_lookup_is_not_undone_by_caching(env: Env) -> None:
    token = generate_token()
    row = env.repo.add(token)
    env.repo.pause = asyncio.Event()
    pending = asyncio.create_task(env.auth.authenticate(token))
    await asyncio.sleep(0)
    env.auth.revoked(row.id)  # arrives while the database read is in flight
    env.repo.pause.set()
    await pending
    env.repo.pause = None
    await env.auth.authenticate(token)
    assert env.repo.lookups == 2  # the first answer was not cached
