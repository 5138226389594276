"""What the orchestrator asks for a deploy: a registry, the digest a tag points to, a sealed pull secret.

Each answer is computed for one org: another org's registry is `NotFound`,
exactly like one that does not exist. What is subtle:

* Credentials are read at the Vault version the row names (`credentials_of`);
  a registry whose version is gone is `RegistryBroken` (new credentials fix it),
  which a tag lookup reports as `unauthorized` and a pull secret as unavailable.
* Vendor registries are never resolved nor given a secret: the data plane's
  cloud identity pulls, so the tag stays a tag (`skipped`).
* A password leaves only inside `.dockerconfigjson` sealed to the data plane's key: the key the
  orchestrator *enrolled* for the plane the request names, asked for each time (a re-enrolled
  agent's new key counts at once). A key in the request is ignored, so whoever can send the
  request cannot have a password sealed to a key of its choosing. No enrolled key (or no such
  plane) is `not_enrolled`, which the orchestrator waits on as on a plane not enrolled yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.contracts.messages import PullSecretReply, RegistryInfo, ResolvedImage
from libs.oci.dockerconfig import build_docker_config_json
from libs.oci.reference import InvalidReference
from libs.oci.registry.client import RegistryClient
from libs.runtime.errors import NotFound
from services.credentials.clients.orchestrator import Orchestrator
from services.credentials.domain import (
    SECRET_TYPES,
    Credentials,
    Registry,
    RegistryBroken,
    RuleViolation,
    manifest_reference,
    repository_name,
    seal,
)
from services.credentials.store import RegistrySecrets, SecretMissing
from services.credentials.usecases.catalog import Catalog

VENDOR_SKIPPED = "vendor registry: the data plane's cloud identity pulls; tag not pinned"


async def credentials_of(secrets: RegistrySecrets, registry: Registry) -> Credentials | None:
    """The stored username and password (None for registries without a secret)."""
    if registry.auth_type not in SECRET_TYPES:
        return None
    if registry.secret_version is None:
        raise RegistryBroken("the registry has no stored credentials; send new ones with PATCH")
    try:
        return await secrets.read(registry.org, registry.id, registry.secret_version)
    except SecretMissing:
        raise RegistryBroken(
            "the stored credentials are missing from Vault; send new ones with PATCH"
        ) from None


@dataclass
class Pulls:
    catalog: Catalog
    secrets: RegistrySecrets
    client: RegistryClient
    orchestrator: Orchestrator

    async def _registry(self, org: str, registry_id: str) -> Registry:
        registry = await self.catalog.find(org, registry_id)
        if registry is None:
            raise NotFound("registry", detail="no such registry in this org")
        return registry

    async def info(self, org: str, registry_id: str) -> RegistryInfo:
        return RegistryInfo.model_validate(await self._registry(org, registry_id), from_attributes=True)

    async def resolve(self, org: str, registry_id: str, repository: str, reference: str) -> ResolvedImage:
        registry = await self._registry(org, registry_id)
        if registry.auth_type == "vendor":
            return ResolvedImage(status="skipped", detail=VENDOR_SKIPPED)
        try:
            repo_name = repository_name(registry.host, repository)
            ref = manifest_reference(reference)
        except RuleViolation as exc:
            return ResolvedImage(status="not_found", detail=f"invalid repository: {exc.message}")
        except InvalidReference as exc:
            return ResolvedImage(status="not_found", detail=f"invalid tag or digest: {exc.reason}")
        try:
            credentials = await credentials_of(self.secrets, registry)
        except RegistryBroken as exc:
            return ResolvedImage(status="unauthorized", detail=str(exc))
        return await self.client.resolve(registry.host, credentials, repo_name, ref)

    async def pull_secret(self, org: str, registry_id: str, dataplane_id: str) -> PullSecretReply:
        """The `.dockerconfigjson` sealed to the data plane's enrolled key.

        Raises `BadPublicKey`, `RegistryBroken`, `OrchestratorUnavailable`."""
        registry = await self._registry(org, registry_id)
        if registry.auth_type == "anonymous":
            return PullSecretReply(sealed=None, reason="anonymous")
        if registry.auth_type == "vendor":
            return PullSecretReply(sealed=None, reason="vendor")
        recipient = await self.orchestrator.dataplane_key(org, dataplane_id)
        if recipient is None:
            return PullSecretReply(sealed=None, reason="not_enrolled")
        credentials = await credentials_of(self.secrets, registry)
        assert credentials is not None
        config = build_docker_config_json(registry.host, credentials.username, credentials.password)
        sealed = seal(config, recipient_public_key=recipient, registry_id=registry.id)
        return PullSecretReply(sealed=sealed, reason="sealed")
