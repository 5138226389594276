"""What can go wrong with a local server, each error saying what to do about it."""

from __future__ import annotations


class ServerError(RuntimeError):
    """Base class for errors raised by this module."""


class MissingBinaryError(ServerError):
    """A server binary is not installed; the message says how to install it."""


class ServerStartError(ServerError):
    """A server did not become ready; the message holds the tail of its log and a hint."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail

    @property
    def port_conflict(self) -> bool:
        return "address already in use" in self.log_tail.lower()


class RegistryError(ServerError):
    """The registry answered an API call with an unexpected status."""

    def __init__(self, message: str, *, status: int, body: bytes) -> None:
        super().__init__(f"{message}: HTTP {status}: {body[:500].decode('utf-8', 'replace')}")
        self.status = status
        self.body = body
