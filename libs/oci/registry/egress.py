"""Which addresses a registry call may reach, checked on the address the connection really uses.

Why this exists: a registry's host is whatever a tenant typed, and "test
connection" reports what the call found. Without a rule, a tenant could make the
control plane call its own internal addresses (Vault, PostgreSQL, the cloud's
metadata service at 169.254.169.254, a sidecar on loopback) and learn from the
answers. So a registry call reaches only globally routable addresses, unless the
operator lists a host, a `host:port` or a CIDR range in
`LANDFALL_REGISTRY_PRIVATE_HOSTS` (the local stack lists loopback).

What is subtle:

* The check is on the address connected to, not on the name: `PolicyResolver`
  is the session connector's resolver, so the addresses aiohttp connects to are
  exactly the ones it let through. A name that answers a public address to a
  first lookup and 127.0.0.1 to the next (DNS rebinding) gains nothing: every
  lookup is filtered. Of a name's addresses only the allowed ones are used; none
  allowed is `EgressRefused`.
* aiohttp does not resolve IP literals (it connects to them directly), so
  `EgressPolicy.admit` checks a URL's literal host before each call; the caller
  does that on every hop it makes (it follows no redirects, see `auth`).
* Through an HTTP(S) proxy (`LANDFALL_REGISTRY_PROXY_FROM_ENV`) the proxy resolves
  the registry's name, so `admit` resolves it here first (the proxy's own egress
  rules are the operator's second line), and the proxy's address itself must be
  global or listed, since the resolver sees it.
* "Not global" is `ipaddress`'s view plus what it misses: multicast, reserved,
  every IPv4-mapped IPv6 address, and 6to4 / Teredo / NAT64 addresses whose
  embedded IPv4 address is not global.
* A listed name allows every address it resolves to (the operator trusts that
  name); a listed `host:port` only that port; a CIDR (or a bare IP) every port.
* Bearer token realms are an egress rule too (`token_realm_allowed`): a realm on
  another host than the registry's would let a registry point the control plane,
  with the tenant's password, at any host it likes.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Token services on another host than their registry's API, known without being listed.
KNOWN_TOKEN_HOSTS = {
    "registry-1.docker.io": frozenset({"auth.docker.io"}),
    "registry.gitlab.com": frozenset({"gitlab.com"}),
}


class EgressRefused(OSError):
    """The policy refuses every address of a host. An `OSError`, so aiohttp wraps it as a connector error."""

    def __init__(self, host: str) -> None:
        super().__init__(f"registry calls may not reach {host}")
        self.host = host


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is a globally routable unicast address (see the module docstring)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return False
        embedded = [ip.sixtofour, *(ip.teredo or ())]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(v4 is not None and not is_public(v4) for v4 in embedded):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _name(host: str) -> str:
    """A host as the policy compares it: lowercase, no trailing dot, IPv6 without brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """What the operator allows beyond the public internet. The default allows nothing more."""

    names: frozenset[str] = frozenset()
    name_ports: frozenset[tuple[str, int]] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    token_hosts: frozenset[str] = frozenset()
    listed: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def parse(cls, entries: Iterable[str], token_hosts: Iterable[str] = ()) -> EgressPolicy:
        """From `LANDFALL_REGISTRY_PRIVATE_HOSTS` entries (a malformed one is a `ValueError` at start)
        and `LANDFALL_REGISTRY_TOKEN_HOSTS`."""
        names: set[str] = set()
        name_ports: set[tuple[str, int]] = set()
        networks: list[IPNetwork] = []
        listed: list[str] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            listed.append(entry)
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            host, port = _split_host_port(entry)
            if port is None:
                names.add(_name(host))
            else:
                name_ports.add((_name(host), port))
        tokens = frozenset(_name(h) for h in token_hosts if h.strip())
        return cls(frozenset(names), frozenset(name_ports), tuple(networks), tokens, tuple(listed))

    def token_realm_allowed(self, api_host: str, realm_host: str) -> bool:
        """A bearer realm on the registry API's own host name, a known vendor's token host or a listed one."""
        own, realm = _name(api_host), _name(realm_host)
        return realm == own or realm in self.token_hosts or realm in KNOWN_TOKEN_HOSTS.get(own, ())

    def lists(self, host: str, port: int) -> bool:
        """Whether the operator listed this name (any port) or this `name:port`."""
        name = _name(host)
        return name in self.names or (name, port) in self.name_ports

    def allows(self, host: str, port: int, address: str) -> bool:
        """May a call to `host:port` connect to `address` (what `host` resolved to)?"""
        if self.lists(host, port):
            return True
        ip = _address(address)
        if ip is None:
            return False
        if is_public(ip):
            return True
        # An IPv6 zone ("fe80::1%eth0") is not part of the address a range or a listing names.
        bare = ipaddress.ip_address(str(ip).split("%", 1)[0])
        return any(bare in net for net in self.networks) or self.lists(str(bare), port)

    async def admit(self, url: URL, resolver: AbstractResolver | None = None) -> None:
        """Refuse `url` before it is sent when its host is a forbidden IP literal (or, behind a
        proxy, `resolver` says its name has no allowed address). Raises `EgressRefused`."""
        host, port = url.host, url.port
        if not host or port is None:
            raise EgressRefused(str(url.host))
        if _address(host) is not None:
            if not self.allows(host, port, host):
                raise EgressRefused(host)
        elif resolver is not None:
            await resolver.resolve(host, port, socket.AF_UNSPEC)

    def announce(self) -> None:
        """Say at start what the operator opened, so a stack that allows loopback says so."""
        if self.listed:
            log.warning(
                "registry calls may reach these private hosts and ranges "
                "(LANDFALL_REGISTRY_PRIVATE_HOSTS): %s",
                ", ".join(self.listed),
            )


def _split_host_port(entry: str) -> tuple[str, int | None]:
    """`name`, `name:port`, `[v6]` or `[v6]:port`; a port out of range is a `ValueError`."""
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
        if not bracket or (rest and port_text is None):
            raise ValueError(f"not a host, host:port or CIDR: {entry!r}")
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
    else:
        host, port_text = entry, None
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise ValueError(f"not a host, host:port or CIDR: {entry!r}")
    if port_text is None:
        return host, None
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in {entry!r}")
    return host, port


class PolicyResolver(AbstractResolver):
    """The session's resolver: what `inner` answers, less the addresses the policy refuses."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = ThreadedResolver()  # needs the running loop, so made on first use
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self.policy.allows(host, port, r["host"])]
        if not allowed:
            raise EgressRefused(host)
        return allowed

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
