"""A repository of one kind of record: its rows decoded once, read and written under `Repo.guard`.

`row_decoder(Record)` is how a row becomes a record: each field of the frozen
dataclass from the column of the same name (or the one `columns` names), the
`jsonb` columns parsed. It reads a table's row and a row-typed composite value
(`SELECT d, c FROM ...`) alike.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import asyncpg

from libs.runtime.store import Repo

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R")
D = TypeVar("D", bound="DataclassInstance")


def row_decoder(
    record: type[D], *, json_columns: Collection[str] = (), columns: Mapping[str, str] | None = None
) -> Callable[[asyncpg.Record], D]:
    """A function that decodes a row into `record`: each field from its column (`columns` maps a
    field to a column of another name), the `json_columns` parsed from their JSON text."""
    renamed = dict(columns or {})
    names = [
        (f.name, renamed.get(f.name, f.name), f.name in json_columns) for f in dataclasses.fields(record)
    ]

    def decode(row: asyncpg.Record) -> D:
        values = {name: json.loads(row[column]) if parse else row[column] for name, column, parse in names}
        return record(**values)

    return decode


class RecordRepo(Repo, Generic[R]):
    decode: Callable[[asyncpg.Record], R]  # each repository's `row_decoder`, as a staticmethod

    async def row(self, sql: str, *args: Any) -> asyncpg.Record | None:
        """The first row of a query, undecoded, under `guard` (so are `rows`, `value`, `execute`)."""
        async with self.guard():
            return await self.db.fetchrow(sql, *args)

    async def rows(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.guard():
            rows: list[asyncpg.Record] = await self.db.fetch(sql, *args)
        return rows

    async def value(self, sql: str, *args: Any) -> Any:
        async with self.guard():
            return await self.db.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        async with self.guard():
            await self.db.execute(sql, *args)

    async def one(self, sql: str, *args: Any) -> R | None:
        row = await self.row(sql, *args)
        return self.decode(row) if row is not None else None

    async def many(self, sql: str, *args: Any) -> list[R]:
        return [self.decode(r) for r in await self.rows(sql, *args)]

    async def insert_row(self, table: str, **columns: Any) -> R:
        """Insert one row (each column its value) and return it as stored."""
        params = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        inserted = await self.one(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({params}) RETURNING *", *columns.values()
        )
        assert inserted is not None
        return inserted


class PendingRepo(RecordRepo[R]):
    """Records that wait `pending` until they are dispatched, retried after a delay by the sweeper
    (deployments and executions): the same statements on `table`, in each one's own order."""

    table: str
    newest_first: str  # ORDER BY of a component's history
    oldest_first: str  # ORDER BY of the due rows the sweeper claims

    async def get(self, record_id: str) -> R | None:
        return await self.one(f"SELECT * FROM {self.table} WHERE id = $1", record_id)

    async def history(self, component_id: str, *, environment: str | None, limit: int) -> list[R]:
        return await self.many(
            f"SELECT * FROM {self.table} WHERE component_id = $1"
            f" AND ($2::text IS NULL OR environment = $2) ORDER BY {self.newest_first} LIMIT $3",
            component_id,
            environment,
            limit,
        )

    async def claim_due(self, limit: int, *, lease_seconds: float) -> list[str]:
        """Pending rows whose next attempt is due, leased for `lease_seconds` so that another
        replica's sweeper does not pick them too (a crashed attempt is retried after it)."""
        rows = await self.rows(
            f"UPDATE {self.table} SET next_attempt_at = now() + make_interval(secs => $2)"
            f" WHERE id IN (SELECT id FROM {self.table}"
            " WHERE status = 'pending' AND next_attempt_at <= now()"
            f" ORDER BY {self.oldest_first} LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id",
            limit,
            lease_seconds,
        )
        return [r["id"] for r in rows]

    async def defer(self, record_id: str, *, reason: str | None, delay_seconds: float) -> None:
        """Leave it pending and try again after `delay_seconds`."""
        await self.execute(
            f"UPDATE {self.table} SET attempts = attempts + 1, reason = COALESCE($2, reason),"
            " next_attempt_at = now() + make_interval(secs => $3), updated_at = now()"
            " WHERE id = $1 AND status = 'pending'",
            record_id,
            reason,
            delay_seconds,
        )
