"""Where the credentials service keeps things: PostgreSQL for metadata, Vault for secrets.

The only package that speaks SQL (tables live in the `credentials` schema) and
the only one that knows Vault paths. `Tables` binds the repositories to one
executor; `unit_of_work(pool)` offers them on the pool (`.now`) or inside one
transaction (`async with uow.transaction() as tx:`). The transaction commits
after the block's last line, inside `async with`, which is what lets a use case
write Vault between its statements and the commit and still learn that the
commit failed (see `libs.runtime.store` and `usecases.registries`).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from libs.runtime.store import Executor, UnitOfWork
from services.credentials.store.registries import RegistryRepo
from services.credentials.store.secrets import ConfigSecretStore, RegistrySecrets, SecretMissing

__all__ = ["ConfigSecretStore", "RegistrySecrets", "SecretMissing", "Tables", "Uow", "unit_of_work"]


@dataclass(frozen=True, slots=True)
class Tables:
    registries: RegistryRepo


def bind(db: Executor) -> Tables:
    return Tables(registries=RegistryRepo(db))


Uow = UnitOfWork[Tables]


def unit_of_work(pool: asyncpg.Pool) -> Uow:
    return UnitOfWork(pool, bind)
