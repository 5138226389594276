"""PostgreSQL: one database, one schema per service, versioned SQL migrations.

Each service keeps its migrations as `NNNN_name.sql` files in its own
`migrations/` folder and its connections use `search_path = <schema>`, so
the SQL never names a schema and no service can read another's tables by
accident. Migrations run at start under an advisory lock, so two replicas
starting together do not race. Connection loss is reported as
`DatabaseUnavailable`, which the HTTP layer answers with 503 + Retry-After.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from libs.runtime.errors import DependencyUnavailable

log = logging.getLogger(__name__)

_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    TimeoutError,
    # When the server dies under a query, asyncpg may find the connection mid-protocol as it hands it
    # back to the pool ("cannot switch to state 15; another operation (2) is in progress"); the pool
    # drops that connection, and the caller answers 503 like any other outage.
    asyncpg.exceptions.InternalClientError,
)


class DatabaseUnavailable(DependencyUnavailable):
    """PostgreSQL cannot be reached now; nothing was written."""


@contextlib.asynccontextmanager
async def unavailable_on_connection_errors() -> AsyncIterator[None]:
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable(f"PostgreSQL is unavailable: {type(exc).__name__}") from exc


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What the pool does on release besides rolling back an open transaction (asyncpg always does
    that): nothing. The default is one more round trip per use (advisory unlock, CLOSE ALL, UNLISTEN,
    RESET ALL) undoing session state that Landfall never creates: no session advisory locks (only
    `pg_advisory_xact_lock`), no LISTEN, no SET, no cursors outside transactions."""


async def create_pool(dsn: str, *, schema: str, max_size: int = 10) -> asyncpg.Pool:
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max_size,
        server_settings={"search_path": schema, "application_name": f"landfall-{schema}"},
        command_timeout=10,
        timeout=5,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def migrate(pool: asyncpg.Pool, *, schema: str, migrations_dir: Path) -> list[str]:
    """Apply the migrations not applied yet, each in its own transaction; returns their names."""
    applied: list[str] = []
    files = sorted(p for p in migrations_dir.glob("*.sql") if re.match(r"^\d{4}_", p.name))
    async with pool.acquire() as conn:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations '
            "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for path in files:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", schema)
                done = await conn.fetchval(
                    f'SELECT 1 FROM "{schema}".schema_migrations WHERE version = $1', path.stem
                )
                if done:
                    continue
                await conn.execute(path.read_text())
                await conn.execute(
                    f'INSERT INTO "{schema}".schema_migrations (version) VALUES ($1)', path.stem
                )
                applied.append(path.stem)
                log.info("applied migration", extra={"schema": schema, "migration": path.stem})
    return applied


async def ping(pool: asyncpg.Pool) -> None:
    async with unavailable_on_connection_errors():
        await pool.fetchval("SELECT 1", timeout=2)
