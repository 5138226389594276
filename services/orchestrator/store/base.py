"""A repository of one kind of record: its rows decoded once, read and written under `Repo.guard`."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import asyncpg

from libs.runtime.store import Repo

R = TypeVar("R")


class RecordRepo(Repo, Generic[R]):
    def decode(self, row: asyncpg.Record) -> R:
        raise NotImplementedError

    async def one(self, sql: str, *args: Any) -> R | None:
        async with self.guard():
            row = await self.db.fetchrow(sql, *args)
        return self.decode(row) if row is not None else None

    async def many(self, sql: str, *args: Any) -> list[R]:
        async with self.guard():
            rows = await self.db.fetch(sql, *args)
        return [self.decode(r) for r in rows]

    async def execute(self, sql: str, *args: Any) -> None:
        async with self.guard():
            await self.db.execute(sql, *args)
