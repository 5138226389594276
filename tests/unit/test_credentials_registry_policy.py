"""Which addresses a registry call may reach (libs/oci/registry/egress.py) and the settings that open more."""

from __future__ import annotations

import ipaddress
import os
import socket
from unittest import mock

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from libs.oci.registry.egress import EgressPolicy, EgressRefused, PolicyResolver, is_public
from services.credentials.settings import Settings

FORBIDDEN = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "240.0.0.1",
    "192.0.2.1",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:8.8.8.8",  # every IPv4-mapped address: the mapping is the host's own stack
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo whose client is 10.0.0.1
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "140.82.112.33", "2606:4700::1111", "2a00:1450:4001:80b::200e"]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_non_global_addresses_are_refused_by_default(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    assert not EgressPolicy().allows("registry.example", 443, address)


@pytest.mark.parametrize("address", PUBLIC)
def test_global_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))
    assert EgressPolicy().allows("registry.example", 443, address)


def test_the_operator_lists_names_host_ports_and_ranges() -> None:
    policy = EgressPolicy.parse(["10.0.0.0/8", "registry.internal", "127.0.0.1:5000", "[::1]:5001", " "])
    assert policy.allows("anything", 443, "10.9.9.9")  # a range: any name, any port
    assert policy.allows("Registry.Internal.", 8443, "192.168.7.7")  # a name: whatever it resolves to
    assert policy.allows("127.0.0.1", 5000, "127.0.0.1")  # host:port: that port only
    assert not policy.allows("127.0.0.1", 5001, "127.0.0.1")
    assert policy.allows("::1", 5001, "::1")
    assert not policy.allows("::1", 5000, "::1")
    # A listed address:port is reached whatever name resolves to it; the name localhost is not listed.
    assert policy.allows("localhost", 5000, "127.0.0.1")
    assert not policy.allows("localhost", 5002, "127.0.0.1")
    assert not policy.allows("other.internal", 443, "192.168.7.7")


def test_the_local_stack_setting_allows_loopback_only() -> None:
    policy = EgressPolicy.parse(["127.0.0.1/8", "::1", "localhost"])
    assert policy.allows("127.0.0.1", 5000, "127.0.0.1")
    assert policy.allows("localhost", 1, "::1")
    assert policy.allows("a.test", 80, "127.1.2.3")
    assert not policy.allows("a.test", 80, "10.0.0.1")
    assert not policy.allows("a.test", 80, "169.254.169.254")


@pytest.mark.parametrize("entry", ["a b", "host:port", "host:0", "host:70000", "[::1", "[::1]x", "u@h"])
def test_a_malformed_entry_is_refused_at_start(entry: str) -> None:
    with pytest.raises(ValueError):
        EgressPolicy.parse([entry])


def test_settings_read_the_lists_and_default_to_nothing() -> None:
    with mock.patch.dict(os.environ, {}, clear=False):
        os.environ.pop("LANDFALL_REGISTRY_PRIVATE_HOSTS", None)
        assert Settings().registry_private_hosts == []
        assert Settings().registry_token_hosts == []
    env = {
        "LANDFALL_REGISTRY_PRIVATE_HOSTS": "127.0.0.1/8, ::1,localhost",
        "LANDFALL_REGISTRY_TOKEN_HOSTS": '["auth.example"]',
    }
    with mock.patch.dict(os.environ, env):
        assert Settings().registry_private_hosts == ["127.0.0.1/8", "::1", "localhost"]
        assert Settings().registry_token_hosts == ["auth.example"]


class Answers(AbstractResolver):
    """A DNS answer chosen by the test (our own part: the resolver under the policy)."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_the_resolver_keeps_only_allowed_addresses() -> None:
    resolver = PolicyResolver(EgressPolicy(), Answers("8.8.8.8", "127.0.0.1"))
    assert [r["host"] for r in await resolver.resolve("mixed.example", 443)] == ["8.8.8.8"]
    with pytest.raises(EgressRefused):
        await PolicyResolver(EgressPolicy(), Answers("10.0.0.1", "::1")).resolve("inside.example", 443)


async def test_ip_literals_are_checked_before_the_call() -> None:
    policy = EgressPolicy.parse(["127.0.0.1:5000"])
    await policy.admit(URL("http://127.0.0.1:5000/v2/"))
    await policy.admit(URL("https://8.8.8.8/v2/"))
    await policy.admit(URL("https://registry.example/v2/"))  # names: the session's resolver decides
    for url in ("http://127.0.0.1:5001/", "http://[::ffff:127.0.0.1]:5000/", "http://169.254.169.254/"):
        with pytest.raises(EgressRefused):
            await policy.admit(URL(url))
    # Behind a proxy the name is resolved here too.
    with pytest.raises(EgressRefused):
        await policy.admit(URL("https://inside.example/"), PolicyResolver(policy, Answers("10.0.0.1")))


def test_bearer_realms_only_on_the_registry_s_own_or_a_listed_host() -> None:
    policy = EgressPolicy.parse([], token_hosts=["auth.example.com"])
    assert policy.token_realm_allowed("ghcr.io", "GHCR.io.")
    assert policy.token_realm_allowed("registry-1.docker.io", "auth.docker.io")  # Docker Hub's own pair
    assert policy.token_realm_allowed("registry.gitlab.com", "gitlab.com")
    assert not policy.token_realm_allowed("evil.example", "auth.docker.io")  # the pair is Docker Hub's only
    assert policy.token_realm_allowed("harbor.example", "auth.example.com")  # listed by the operator
    assert not policy.token_realm_allowed("harbor.example", "169.254.169.254")
    assert not EgressPolicy().token_realm_allowed("harbor.example", "auth.example.com")
