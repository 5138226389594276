"""The gateway's storage: PostgreSQL repositories under one unit of work, signing secrets in Vault.

Reading order: `tokens` (CI tokens), `accepted` (accepted requests and their
Idempotency-Keys), `webhook_ids` (replay protection), `signing` (which
components require signatures), `secrets` (the signing secrets in Vault).
Tables live in the gateway's own schema (`migrations/`). This package is the
only one of the gateway's that knows SQL or asyncpg.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from libs.runtime.store import Executor, UnitOfWork
from services.webhook_gateway.store.accepted import AcceptedRepo
from services.webhook_gateway.store.secrets import SigningSecrets
from services.webhook_gateway.store.signing import SigningRepo
from services.webhook_gateway.store.tokens import TokenRepo
from services.webhook_gateway.store.webhook_ids import WebhookIdRepo

__all__ = ["SigningSecrets", "Store", "StoreUnit", "bind", "unit_of_work"]


@dataclass(frozen=True, slots=True)
class Store:
    """Every repository, on one executor (the pool, or one transaction's connection)."""

    tokens: TokenRepo
    accepted: AcceptedRepo
    webhook_ids: WebhookIdRepo
    signing: SigningRepo


def bind(db: Executor) -> Store:
    return Store(
        tokens=TokenRepo(db),
        accepted=AcceptedRepo(db),
        webhook_ids=WebhookIdRepo(db),
        signing=SigningRepo(db),
    )


StoreUnit = UnitOfWork[Store]


def unit_of_work(pool: asyncpg.Pool) -> StoreUnit:
    return UnitOfWork(pool, bind)
