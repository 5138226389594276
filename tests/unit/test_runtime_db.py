"""How PostgreSQL outages surface: as `DatabaseUnavailable` (503 + Retry-After, a redelivery), never a 500."""

from __future__ import annotations

import asyncpg
import pytest

from libs.runtime.db import DatabaseUnavailable, unavailable_on_connection_errors
from libs.runtime.errors import DependencyUnavailable


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        # Found by `make chaos`: raised by the pool when a SIGKILLed server left the connection mid-protocol.
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
        TimeoutError(),
    ],
)
async def test_a_lost_database_is_unavailable_not_a_bug(error: Exception) -> None:
    with pytest.raises(DatabaseUnavailable) as caught:
        async with unavailable_on_connection_errors():
            raise error
    assert isinstance(caught.value, DependencyUnavailable)
    assert type(error).__name__ in str(caught.value)


async def test_a_bad_query_is_still_a_bug() -> None:
    with pytest.raises(asyncpg.exceptions.UndefinedTableError):
        async with unavailable_on_connection_errors():
            raise asyncpg.exceptions.UndefinedTableError('relation "nope" does not exist')
