""" "Test connection": ask the registry now, with the stored credentials, and record the answer.

What is subtle: a vendor registry can only be probed (is it a registry at
all?): its pulls use the data plane's cloud identity, which this service does
not have. A registry whose stored secret is gone answers "not ok" with what to
do, not an error; Vault being down is a 503 like every other dependency.
A test never reuses a cached token; what it found goes into the shared audit
trail's item for it (the entry point hands it to the guard).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from libs.oci.registry.client import RegistryClient
from services.credentials.domain import CheckResult, RegistryBroken, repository_name
from services.credentials.store import RegistrySecrets
from services.credentials.usecases.catalog import Catalog
from services.credentials.usecases.pulls import credentials_of

log = logging.getLogger(__name__)


@dataclass
class Checks:
    secrets: RegistrySecrets
    catalog: Catalog
    client: RegistryClient

    async def test(self, org: str, registry_id: str, repository: str | None) -> CheckResult:
        registry = await self.catalog.get(org, registry_id)
        repo_name = repository_name(registry.host, repository) if repository is not None else None
        if registry.auth_type == "vendor":
            probe = await self.client.probe(registry.host)
            result = (
                CheckResult(
                    True,
                    f"{probe.detail}; pulls use the data plane's {registry.vendor} cloud identity, "
                    "which cannot be tested from here",
                )
                if probe.ok
                else probe
            )
        else:
            try:
                credentials = await credentials_of(self.secrets, registry)
            except RegistryBroken as exc:
                result = CheckResult(False, str(exc))
            else:
                result = await self.client.check(registry.host, credentials, repo_name)
        log.info(
            "registry tested",
            extra={"org": org, "registry_id": registry_id, "ok": result.ok, "host": registry.host},
        )
        return result
