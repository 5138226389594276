"""PostgreSQL access in one shape for every service: repositories under a unit of work.

A service's `store/` package defines repositories (one class per kind of record,
subclasses of `Repo`) and one function that binds them all to a connection.
`UnitOfWork(pool, bind)` then offers the same repositories two ways:

* `uow.now`: bound to the pool, each statement commits on its own (reads, and
  single-statement writes on the hot path, with no transaction round trips);
* `async with uow.transaction() as tx:`: bound to one connection inside one
  transaction, committed when the block ends without an exception.

What is subtle:

* The commit happens *after* the block's last line, inside `async with`: a
  caller that wrote something outside PostgreSQL in the block (a Vault version)
  learns that the commit failed because the exception comes out of the
  `async with`, and can undo its outside write.
* Connection problems anywhere (acquire, statements, commit) are
  `DatabaseUnavailable` (503 + Retry-After for HTTP, a nak for consumers).
* A unique constraint is reported as `Duplicate(field)`, with the field named as
  the client knows it (`constraint_fields` maps constraint names); a use case
  turns it into a `Conflict`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import asyncpg

from libs.runtime.db import unavailable_on_connection_errors

T = TypeVar("T")

# asyncpg.Pool or asyncpg.Connection: both offer execute / fetch / fetchrow / fetchval.
Executor = Any


class Duplicate(Exception):
    """A unique constraint refused the row; `field` is the client's name for what collided."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@contextlib.contextmanager
def duplicates_as(constraint_fields: Mapping[str, str], *, default: str | None = "name") -> Iterator[None]:
    """Turn a unique violation into `Duplicate(field)`; an unmapped constraint uses `default`
    (None: re-raise it as it is)."""
    try:
        yield
    except asyncpg.exceptions.UniqueViolationError as exc:
        field = constraint_fields.get(exc.constraint_name or "", default)
        if field is None:
            raise
        raise Duplicate(field) from exc


class Repo:
    """Statements on `db`: the pool (autocommit per statement) or one transaction's connection."""

    constraint_fields: Mapping[str, str] = {}

    def __init__(self, db: Executor) -> None:
        self.db = db

    @contextlib.asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Connection errors as `DatabaseUnavailable`, unique violations as `Duplicate`."""
        with duplicates_as(self.constraint_fields):
            async with unavailable_on_connection_errors():
                yield


class UnitOfWork(Generic[T]):
    """The repositories `bind` makes, on the pool (`now`) or inside a transaction (`transaction()`)."""

    def __init__(self, pool: asyncpg.Pool, bind: Callable[[Executor], T]) -> None:
        self.pool = pool
        self._bind = bind
        self.now: T = bind(pool)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[T]:
        async with unavailable_on_connection_errors():
            conn = await self.pool.acquire()
        try:
            tx = conn.transaction()
            async with unavailable_on_connection_errors():
                await tx.start()
            try:
                yield self._bind(conn)
            except BaseException:
                with contextlib.suppress(Exception):
                    await tx.rollback()
                raise
            async with unavailable_on_connection_errors():
                await tx.commit()
        finally:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
