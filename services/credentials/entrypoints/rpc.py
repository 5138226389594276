"""Request-reply handlers for the orchestrator (queue group "credentials").

Thin like the HTTP handlers: `Bus.serve` decodes the request, the use case
answers, and `Bus.serve` itself turns `NotFound` (another org's registry looks
exactly like one that does not exist), `Invalid` (`BadPublicKey`) and a
dependency outage into `not_found`, `invalid` and `unavailable`. What is left
here: a registry whose secret is gone from Vault (`RegistryBroken`) is
`unavailable` to the orchestrator too, which keeps retrying the deploy while a
person sends new credentials. An environment's config secrets are sealed the same way
(`usecases.config_secrets`), on their own subject.
"""

from __future__ import annotations

from libs.contracts import rpc
from libs.contracts.messages import PullSecretReply, PullSecretRequest
from libs.runtime.bus import Bus, RpcHandlerError
from services.credentials.domain import RegistryBroken
from services.credentials.usecases.config_secrets import ConfigSecrets
from services.credentials.usecases.pulls import Pulls

QUEUE = "credentials"


async def serve(bus: Bus, pulls: Pulls, config_secrets: ConfigSecrets) -> None:
    # Each request and reply type is the table's (libs.contracts.rpc): mypy takes them from there.
    async def pull_secret(req: PullSecretRequest) -> PullSecretReply:
        try:
            # sealed to the plane's enrolled key: req.recipient_public_key is ignored (see the message)
            return await pulls.pull_secret(req.org, req.registry_id, req.dataplane_id)
        except RegistryBroken as exc:
            raise RpcHandlerError("unavailable", str(exc)) from None

    await bus.answer(rpc.REGISTRY_GET, lambda req: pulls.info(req.org, req.registry_id), queue=QUEUE)
    await bus.answer(
        rpc.RESOLVE_IMAGE,
        lambda req: pulls.resolve(req.org, req.registry_id, req.repository, req.reference),
        queue=QUEUE,
    )
    await bus.answer(rpc.PULL_SECRET, pull_secret, queue=QUEUE)
    await bus.answer(rpc.CONFIG_SECRETS_SEAL, config_secrets.seal, queue=QUEUE)
    await bus.nc.flush(timeout=5)
