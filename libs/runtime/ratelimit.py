"""Limits before authentication: refused credentials per client address, in memory per replica.

Who is calling is not known yet when a token is checked, so the only key is the client's
address. What is limited is *refusals* (unknown, malformed, revoked, expired credentials; a
wrong enrollment token), not checks: a CI runner behind one NAT address sends hundreds of good
requests a second, which must not be throttled here (the gateway limits each CI token on its
own). An address whose bucket is empty is answered 429 with `Retry-After` *before* its token is
looked up, so guessing tokens costs the database and the bus nothing, and its good tokens wait too
(one address, one bucket: that is the price of not knowing who it is yet).

`X-Forwarded-For` is believed only when the operator says how many trusted proxies stand in front
(`LANDFALL_TRUSTED_PROXY_HOPS`): the entry that many places from the right is the one the first
trusted proxy saw; the entries left of it are whatever the client wrote. With 0 (the default) the
header is ignored and the peer address is the client.

`LANDFALL_TRUSTED_PROXIES` (addresses or CIDRs, empty by default) names proxies *inside* the
deployment that forward for their own clients, such as the console (a backend-for-frontend that
calls the API with each user's key from its own address). Like nginx's `set_real_ip_from` with
`real_ip_recursive`: the chain is X-Forwarded-For plus the peer; the entry `trusted_proxy_hops`
places from the right is chosen as before, and while it is a listed proxy with an entry left of it
the choice moves one left. An entry that is not an IP address stops the walk (it is never believed
to be a proxy). With the list empty the address is exactly what it was without it.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.runtime.errors import ProblemError


class PreAuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LANDFALL_", extra="ignore")

    preauth_refusals_per_second: float = Field(
        default=1.0, gt=0, description="refused credentials per client address, sustained"
    )
    preauth_refusal_burst: int = Field(
        default=30, ge=1, description="refused credentials per address, bucket"
    )
    trusted_proxy_hops: int = Field(
        default=0, ge=0, le=10, description="trusted proxies in front: X-Forwarded-For is read only when > 0"
    )
    trusted_proxies: str = Field(
        default="",
        description="addresses/CIDRs of proxies (the console) whose forwarded client is believed",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: str) -> str:
        parse_networks(value)  # a bad entry is a startup error naming it
        return value


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> tuple[Network, ...]:
    """`10.0.0.5, 10.1.0.0/16` -> networks; ValueError names the first entry that is neither."""
    networks: list[Network] = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"LANDFALL_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _is_trusted(entry: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(entry)
    except ValueError:
        return False  # not an address: never believed as a proxy, the walk stops here
    return any(address.version == n.version and address in n for n in networks)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets by key. Full buckets are forgotten when the table grows (memory is bounded)."""

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str) -> _Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget_full(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def take(self, key: str) -> float | None:
        """Spend one request for `key`: None if allowed, else the seconds to wait before retrying."""
        bucket = self._bucket(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / self.rate

    def wait(self, key: str) -> float | None:
        """Like `take`, without spending: None while `key` has a request left."""
        if key not in self._buckets:
            return None
        bucket = self._bucket(key)
        return None if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        full_after = self.burst / self.rate
        for key in [k for k, b in self._buckets.items() if now - b.updated >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # everyone is busy: drop the oldest half
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].updated)
            for key in oldest[: len(oldest) // 2]:
                del self._buckets[key]


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is let through."""
    return str(max(1, math.ceil(seconds)))


def too_many(detail: str, wait: float) -> ProblemError:
    return ProblemError(
        429,
        "Too Many Requests",
        detail,
        kind="rate-limited",
        headers={"Retry-After": retry_after_header(wait)},
    )


class Peer(Protocol):
    """What the limiter reads of a request (an aiohttp `web.Request`; no aiohttp import here, so
    the gateway's pure domain may use the buckets)."""

    @property
    def remote(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


class AddressLimiter:
    """Refused credentials per client address: `check` before a look-up, `refused` after a refusal."""

    def __init__(self, settings: PreAuthSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.hops = settings.trusted_proxy_hops
        self.proxies = parse_networks(settings.trusted_proxies)
        self.buckets = RateLimiter(
            rate=settings.preauth_refusals_per_second, burst=settings.preauth_refusal_burst, clock=clock
        )

    def address(self, request: Peer) -> str:
        """The client's address: see the module docstring (hops from the right, then listed proxies)."""
        if self.hops == 0 and not self.proxies:
            return request.remote or "unknown"
        forwarded = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
        chain = [*forwarded, request.remote or "unknown"]
        index = len(chain) - 1 - self.hops if len(forwarded) >= self.hops else len(chain) - 1
        while index > 0 and _is_trusted(chain[index], self.proxies):
            index -= 1
        return chain[index][:64]

    def wait(self, request: Peer) -> float | None:
        """Seconds until this address may be refused again; None while it has refusals left."""
        return self.buckets.wait(self.address(request))

    def check(self, request: Peer) -> None:
        """429 (Retry-After) when this address has used up its refusals; nothing is looked up then."""
        wait = self.wait(request)
        if wait is not None:
            raise too_many(
                "too many refused credentials from this address; retry after the time in Retry-After", wait
            )

    def refused(self, request: Peer) -> None:
        self.buckets.take(self.address(request))
