"""How the outside reaches the orchestrator: HTTP routes, JetStream consumers, RPC servers.

They decode, call a use case and encode; `UseCases` is what `app.create_app`
builds for them and keeps under `USECASES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web

from services.orchestrator.usecases.access import ApiKeys, AuditTrail
from services.orchestrator.usecases.catalog import Catalog
from services.orchestrator.usecases.configs import Configs
from services.orchestrator.usecases.dataplanes import DataPlanes
from services.orchestrator.usecases.deployments import Deployments
from services.orchestrator.usecases.executions import Executions
from services.orchestrator.usecases.intake import Intake
from services.orchestrator.usecases.reports import Reports
from services.orchestrator.usecases.sweep import Sweeper


@dataclass(frozen=True, slots=True)
class UseCases:
    catalog: Catalog
    dataplanes: DataPlanes
    intake: Intake
    deployments: Deployments
    executions: Executions
    reports: Reports
    sweeper: Sweeper
    api_keys: ApiKeys
    audit: AuditTrail
    configs: Configs


USECASES = web.AppKey("usecases", UseCases)
HEARTBEAT_FRESH = web.AppKey("heartbeat_fresh", timedelta)
