"""PostgreSQL: the orchestrator's repositories, one module per kind of record, under one unit of work.

`open_store(pool)` gives a `UnitOfWork[Repos]`: `store.now.<repo>` runs each
statement on its own (the hot path: a report is one UPDATE, a deployment is
recorded by one function call), `async with store.transaction() as tx` binds
the same repositories to one transaction for the use cases that write more
than one row together (enrollment, deleting a component, moving an execution).
This package is the only place that speaks SQL and imports asyncpg; connection
failures come out as `DatabaseUnavailable`, unique violations as `Duplicate`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import get_type_hints

import asyncpg

from libs.runtime.store import Executor, UnitOfWork
from services.orchestrator.store.apikeys import ApiKeys
from services.orchestrator.store.audit import AuditEvents
from services.orchestrator.store.components import Components, Projects
from services.orchestrator.store.configs import EnvironmentConfigs
from services.orchestrator.store.dataplanes import DataPlanes
from services.orchestrator.store.deployments import Deployments
from services.orchestrator.store.environments import Environments
from services.orchestrator.store.executions import Executions
from services.orchestrator.store.orgs import Orgs
from services.orchestrator.store.teardowns import Teardowns


@dataclass(frozen=True, slots=True)
class Repos:
    orgs: Orgs
    dataplanes: DataPlanes
    environments: Environments
    projects: Projects
    components: Components
    deployments: Deployments
    executions: Executions
    teardowns: Teardowns
    api_keys: ApiKeys
    audit: AuditEvents
    configs: EnvironmentConfigs


_REPO_CLASSES = get_type_hints(Repos)


def bind(db: Executor) -> Repos:
    """Every repository `Repos` names, on `db` (the pool, or one transaction's connection)."""
    return Repos(**{f.name: _REPO_CLASSES[f.name](db) for f in fields(Repos)})


Store = UnitOfWork[Repos]


def open_store(pool: asyncpg.Pool) -> Store:
    return UnitOfWork(pool, bind)
