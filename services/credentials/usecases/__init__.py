"""The credentials service's use cases, one module each, over the store, the clients and the domain.

`catalog` (look registries up in one org), `registries` (create,
rename, rotate, delete: the PostgreSQL/Vault write order), `checks` ("test
connection"), `pulls` (what the orchestrator asks: a registry, a tag's digest,
a sealed pull secret). They raise domain errors (`libs.runtime.errors` and
`domain`); the entry points turn them into HTTP problems or RPC errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.credentials.usecases.catalog import Catalog
from services.credentials.usecases.checks import Checks
from services.credentials.usecases.pulls import Pulls
from services.credentials.usecases.registries import Registries


@dataclass(frozen=True, slots=True)
class UseCases:
    """Every use case of the service, built once by `app.create_app` and shared by the entry points."""

    catalog: Catalog
    registries: Registries
    checks: Checks
    pulls: Pulls
