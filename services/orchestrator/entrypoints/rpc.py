"""The orchestrator's RPC servers (NATS request-reply) for the webhook gateway and credentials.

`Bus.serve` answers a use case's `NotFound` as `not_found` and an unreachable
PostgreSQL as `unavailable`, so the handlers only translate records to messages.
The API-key look-up answers every other service's guard: `not_found` for a digest
nobody holds, else the key's `ApiKeyInfo` (revoked ones too: the caller refuses them,
and names them in its audit trail). The data-plane key answers the credentials
service (only its NATS user may ask): the key it seals pull secrets to, `None` while
no agent has enrolled, `not_found` for a plane the org does not have. An agent's JWT renewal
(any agent's NATS user may ask; the signature by its enrolled user key decides) answers a new
JWT, `not_found` (not that plane's enrolled key, or a bad signature) or `invalid` (its
`issued_at` is far from our clock).
"""

from __future__ import annotations

from libs.contracts import rpc
from libs.contracts.identity import ApiKeyInfo, ApiKeyLookup
from libs.contracts.messages import (
    AgentJwtRenew,
    AgentJwtRenewed,
    ComponentGet,
    ComponentInfo,
    DataPlaneKey,
    DataPlaneKeyGet,
    DeploymentGet,
    DeploymentView,
    RegistryUsage,
    RegistryUsageReply,
)
from libs.runtime.bus import Bus
from libs.runtime.errors import NotFound
from services.orchestrator.entrypoints import UseCases

QUEUE = "orchestrator"


async def serve_rpcs(bus: Bus, usecases: UseCases) -> None:
    async def component_get(req: ComponentGet) -> ComponentInfo:
        component = await usecases.catalog.component(req.org, req.project, req.component)
        return ComponentInfo(
            org=component.org,
            project=component.project,
            component=component.name,
            type=component.type,
            registry_id=component.registry_id,
            registry_host=component.registry_host,
            repository=component.repository,
            component_id=component.id,
        )

    async def deployment_get(req: DeploymentGet) -> DeploymentView:
        return (await usecases.deployments.get(req.deployment_id)).view()

    async def registry_usage(req: RegistryUsage) -> RegistryUsageReply:
        return RegistryUsageReply(components=await usecases.catalog.registry_usage(req.org, req.registry_id))

    async def apikey_lookup(req: ApiKeyLookup) -> ApiKeyInfo:
        try:
            digest = bytes.fromhex(req.key_sha256)
        except ValueError:
            raise NotFound("API key") from None
        info = await usecases.api_keys.lookup(digest)
        if info is None:
            raise NotFound("API key")
        return info

    async def dataplane_key(req: DataPlaneKeyGet) -> DataPlaneKey:
        return DataPlaneKey(public_key=(await usecases.dataplanes.get(req.org, req.dataplane_id)).public_key)

    async def agent_jwt_renew(req: AgentJwtRenew) -> AgentJwtRenewed:
        grant = await usecases.dataplanes.renew(
            dataplane_id=req.dataplane_id,
            user_public_key=req.user_public_key,
            issued_at=req.issued_at,
            signature=req.signature,
        )
        return AgentJwtRenewed(jwt=grant.jwt, expires_at=grant.expires_at)

    await bus.answer(rpc.DATAPLANE_KEY, dataplane_key, queue=QUEUE)
    await bus.answer(rpc.AGENT_JWT_RENEW, agent_jwt_renew, queue=QUEUE)
    await bus.answer(rpc.APIKEY_LOOKUP, apikey_lookup, queue=QUEUE)
    await bus.answer(rpc.COMPONENT_GET, component_get, queue=QUEUE)
    await bus.answer(rpc.DEPLOYMENT_GET, deployment_get, queue=QUEUE)
    await bus.answer(rpc.REGISTRY_USAGE, registry_usage, queue=QUEUE)
