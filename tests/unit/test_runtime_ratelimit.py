"""The client address behind proxies: hops from the right, then listed proxies walked left."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from pydantic import ValidationError

from libs.runtime.ratelimit import AddressLimiter, PreAuthSettings


@dataclass
class FakePeer:
    remote: str | None
    headers: Mapping[str, str] = field(default_factory=dict)


def address(remote: str | None, xff: str | None = None, *, hops: int = 0, proxies: str = "") -> str:
    settings = PreAuthSettings(trusted_proxy_hops=hops, trusted_proxies=proxies)
    headers = {} if xff is None else {"X-Forwarded-For": xff}
    return AddressLimiter(settings).address(FakePeer(remote, headers))


def test_without_trusted_proxies_behaviour_is_unchanged() -> None:
    assert address("10.0.0.9", "1.2.3.4") == "10.0.0.9"  # header ignored with 0 hops
    assert address(None) == "unknown"
    assert address("10.0.0.9", "6.6.6.6, 1.2.3.4", hops=1) == "1.2.3.4"
    assert address("10.0.0.9", "6.6.6.6, 1.2.3.4", hops=2) == "6.6.6.6"
    assert address("10.0.0.9", "1.2.3.4", hops=2) == "10.0.0.9"  # too short: the peer


def test_a_listed_peer_forwards_its_client() -> None:
    assert address("10.1.0.5", "203.0.113.7", proxies="10.1.0.0/16") == "203.0.113.7"
    assert address("10.2.0.5", "203.0.113.7", proxies="10.1.0.0/16") == "10.2.0.5"  # not listed


def test_the_walk_goes_left_through_every_listed_proxy_and_stops_at_the_first_other() -> None:
    xff = "6.6.6.6, 203.0.113.7, 10.1.0.6"
    assert address("10.1.0.5", xff, proxies="10.1.0.0/16") == "203.0.113.7"
    # after the ingress hop, the console's entry is listed and is walked past
    assert address("10.9.0.1", "6.6.6.6, 203.0.113.7, 10.1.0.6", hops=1, proxies="10.1.0.6") == "203.0.113.7"


def test_the_walk_stops_at_the_leftmost_entry() -> None:
    assert address("10.1.0.5", "10.1.0.7", proxies="10.1.0.0/16") == "10.1.0.7"
    assert address("10.1.0.5", None, proxies="10.1.0.0/16") == "10.1.0.5"


def test_entries_that_are_not_addresses_stop_the_walk() -> None:
    assert address("10.1.0.5", "203.0.113.7, unknown", proxies="10.1.0.0/16") == "unknown"
    assert address("10.1.0.5", "203.0.113.7, 10.1.0.0/16", proxies="10.1.0.0/16") == "10.1.0.0/16"


def test_ipv6_and_single_addresses() -> None:
    assert address("fd00::5", "2001:db8::1", proxies="fd00::/8, 10.1.0.5") == "2001:db8::1"
    assert address("10.1.0.5", "2001:db8::1", proxies="fd00::/8, 10.1.0.5") == "2001:db8::1"


def test_a_bad_entry_is_a_clear_startup_error() -> None:
    with pytest.raises(ValidationError, match="'not-a-net' is not an IP address or CIDR"):
        PreAuthSettings(trusted_proxies="10.0.0.0/8, not-a-net")


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANDFALL_TRUSTED_PROXIES", "10.1.0.0/16")
    assert (
        AddressLimiter(PreAuthSettings()).address(FakePeer("10.1.0.5", {"X-Forwarded-For": "1.2.3.4"}))
        == "1.2.3.4"
    )


def test_refusals_are_keyed_on_the_forwarded_address() -> None:
    limiter = AddressLimiter(
        PreAuthSettings(preauth_refusal_burst=2, trusted_proxies="10.1.0.5"), clock=lambda: 0.0
    )
    guesser = FakePeer("10.1.0.5", {"X-Forwarded-For": "6.6.6.6"})
    other = FakePeer("10.1.0.5", {"X-Forwarded-For": "203.0.113.7"})
    limiter.refused(guesser)
    limiter.refused(guesser)
    with pytest.raises(Exception, match="too many refused"):
        limiter.check(guesser)
    limiter.check(other)
