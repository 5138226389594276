"""The request-reply calls between services, each declared once: its subject, request and reply.

The server (`Bus.answer`) and every client (`Bus.ask`) take the same entry, so mypy holds a
handler to the reply its callers decode, and no side names a subject or a reply type of its
own. The subjects stay in `Subjects` (the NATS permissions grant them one by one); an entry
only says which one. The agent's in-cluster resolve is not here: its subject names a data plane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from libs.contracts.identity import ApiKeyInfo, ApiKeyLookup
from libs.contracts.messages import (
    AgentJwtRenew,
    AgentJwtRenewed,
    ComponentGet,
    ComponentInfo,
    ConfigSecretsReply,
    ConfigSecretsSeal,
    DataPlaneKey,
    DataPlaneKeyGet,
    DeploymentGet,
    DeploymentView,
    PullSecretReply,
    PullSecretRequest,
    RegistryGet,
    RegistryInfo,
    RegistryUsage,
    RegistryUsageReply,
    ResolvedImage,
    ResolveImage,
)
from libs.contracts.subjects import Subjects

Q = TypeVar("Q", bound=BaseModel)
A = TypeVar("A", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Rpc(Generic[Q, A]):
    subject: Callable[[Subjects], str]
    request: type[Q]
    reply: type[A]


# answered by the credentials service (queue group "credentials")
REGISTRY_GET = Rpc(lambda s: s.rpc_registry_get, RegistryGet, RegistryInfo)
RESOLVE_IMAGE = Rpc(lambda s: s.rpc_resolve_image, ResolveImage, ResolvedImage)
PULL_SECRET = Rpc(lambda s: s.rpc_pull_secret, PullSecretRequest, PullSecretReply)
CONFIG_SECRETS_SEAL = Rpc(lambda s: s.rpc_config_secrets_seal, ConfigSecretsSeal, ConfigSecretsReply)

# answered by the orchestrator (queue group "orchestrator")
COMPONENT_GET = Rpc(lambda s: s.rpc_component_get, ComponentGet, ComponentInfo)
DEPLOYMENT_GET = Rpc(lambda s: s.rpc_deployment_get, DeploymentGet, DeploymentView)
REGISTRY_USAGE = Rpc(lambda s: s.rpc_registry_usage, RegistryUsage, RegistryUsageReply)
APIKEY_LOOKUP = Rpc(lambda s: s.rpc_apikey_lookup, ApiKeyLookup, ApiKeyInfo)
DATAPLANE_KEY = Rpc(lambda s: s.rpc_dataplane_key, DataPlaneKeyGet, DataPlaneKey)
# asked by agents (each proves it holds its enrolled NATS user key; any agent's user may ask)
AGENT_JWT_RENEW = Rpc(lambda s: s.rpc_agent_jwt_renew, AgentJwtRenew, AgentJwtRenewed)
