"""The data planes' agents as the orchestrator reaches them: all of it over NATS.

* Commands (`DeployCommand`, `RemoveCommand`) go on the data plane's own deploy
  subject (JetStream, with a msg id, so a repeated publish within the stream's
  duplicate window is dropped by the server), in the order they are sent.
* Enrollment creates the agent's durable consumer (`ensure_consumer`): an agent
  with its own NATS user may only bind to it, not create it.
* In operator mode the orchestrator holds the NATS account's signing key
  (`LANDFALL_NATS_ACCOUNT_SIGNING_SEED`) and signs, for the public half of the
  agent's nkeys user key, a user JWT with the permissions of
  `libs.runtime.natsauth.agent_permissions`. nats-server checks them on every
  subscribe and publish, so an agent cannot read another data plane's commands
  or speak for it, whatever code it runs. The agent's seed never reaches us; the
  JWT is not a secret without it.

`AgentNatsIssuer` lives here, not in the domain, because it is NATS
configuration holding a key (`libs.runtime.natsauth`): together with the
consumer, it is what nats-server lets one agent do.

* `resolve_in_cluster` is core request-reply to one data plane's agent (`dataplanes.<id>.resolve`),
  for a registry the control plane cannot reach: the agent sits where the cluster pulls from. No
  responder (an agent offline, or one too old to serve it) and a timeout are the same answer to
  the caller: `BusUnavailable`.
* An agent's JWT expires (`LANDFALL_AGENT_JWT_TTL_SECONDS`, 24 h): a running agent renews it over
  `rpc.orchestrator.agent-jwt.renew`, proving it holds the enrolled user key; a re-enrolled or
  deleted plane's key is revoked in the account JWT (`clients/nats_accounts.py`).
* Every command is signed (Ed25519, `libs.contracts.signing`) here, in `send`,
  the one place commands leave the orchestrator, so no path can publish an
  unsigned one. `CommandKeys.announced` is what an enrolling agent pins: the
  current public key and, while rotating, the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nacl.signing import SigningKey

from libs.contracts import signing
from libs.contracts.messages import DeployCommand, RemoveCommand, ResolvedImage, ResolveInCluster
from libs.contracts.subjects import Subjects
from libs.runtime.bus import Bus, BusUnavailable, RpcFailed
from libs.runtime.natsauth import NKey, agent_inbox_prefix, agent_permissions, user_jwt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NatsGrant:
    jwt: str
    inbox_prefix: str
    expires_at: int | None = None


class AgentNatsIssuer:
    """Mints agents' user JWTs; each expires `ttl_seconds` after `clock()` (None: never)."""

    def __init__(
        self,
        *,
        signing_seed: str,
        account: str | None,
        subjects: Subjects,
        ttl_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = NKey.from_seed(signing_seed, kind="account")
        self.account = account or self._signer.public_key
        self.subjects = subjects
        self.ttl_seconds = ttl_seconds
        self.clock = clock

    @property
    def signing_key(self) -> str:
        return self._signer.public_key

    def issue(self, dataplane_id: str, user_public_key: str) -> NatsGrant:
        expires_at = None if self.ttl_seconds is None else int(self.clock() + self.ttl_seconds)
        token = user_jwt(
            user_public_key,
            signer=self._signer,
            account=self.account,
            name=self.subjects.agent_durable(dataplane_id),
            permissions=agent_permissions(self.subjects, dataplane_id),
            expires_at=expires_at,
        )
        return NatsGrant(jwt=token, inbox_prefix=agent_inbox_prefix(dataplane_id), expires_at=expires_at)


@dataclass(frozen=True)
class CommandKeys:
    """The key that signs commands and the public keys agents pin at enrollment."""

    signer: SigningKey = field(repr=False)
    next_public_key: str | None = None  # rotation: announced now, signing with it comes later

    @property
    def key_id(self) -> str:
        return signing.key_id(bytes(self.signer.verify_key))

    @property
    def announced(self) -> list[str]:
        current = signing.public_key_b64(self.signer)
        rest = [self.next_public_key] if self.next_public_key not in (None, current) else []
        return [current, *(key for key in rest if key is not None)]


class Agents:
    def __init__(self, bus: Bus, *, keys: CommandKeys, issuer: AgentNatsIssuer | None = None) -> None:
        self.bus = bus
        self.keys = keys
        self.issuer = issuer

    async def send(self, command: DeployCommand | RemoveCommand, *, msg_id: str) -> None:
        """Sign the command and store it on its data plane's subject; `BusUnavailable` when JetStream
        has not."""
        signed = signing.sign(command, self.keys.signer)
        await self.bus.publish_durable(self.bus.subjects.deploy(command.dataplane_id), signed, msg_id=msg_id)

    async def resolve_in_cluster(self, request: ResolveInCluster, *, timeout: float) -> ResolvedImage:
        """What the tag points to, as the data plane's agent sees it from inside its cluster;
        `BusUnavailable` when no agent answered in time (or it answered an error)."""
        try:
            return await self.bus.request(
                self.bus.subjects.resolve(request.dataplane_id), request, ResolvedImage, timeout=timeout
            )
        except RpcFailed as exc:
            raise BusUnavailable(f"the agent answered {exc.error.code}: {exc.error.message[:200]}") from exc

    @property
    def command_keys(self) -> list[str]:
        """What an enrolling agent pins (base64 Ed25519 public keys)."""
        return self.keys.announced

    async def ensure_consumer(self, dataplane_id: str) -> None:
        await self.bus.ensure_agent_consumer(dataplane_id)

    async def update_consumer(self, dataplane_id: str) -> None:
        """Bring an existing consumer's settings to today's (none is created)."""
        await self.bus.ensure_agent_consumer(dataplane_id, create=False)

    async def drop_consumer(self, dataplane_id: str) -> bool:
        """Delete a deleted plane's durable consumer (it counts against the stream's consumer limit).
        Best effort: False (logged) when NATS did not answer; one that is gone already is fine."""
        stream, durable = (
            self.bus.subjects.dataplane_stream.name,
            self.bus.subjects.agent_durable(dataplane_id),
        )
        try:
            await self.bus.js.delete_consumer(stream, durable)
        except nats.js.errors.NotFoundError:
            return True
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning(
                "agent consumer not deleted", extra={"dataplane_id": dataplane_id, "error": repr(exc)}
            )
            return False
        return True

    @property
    def issues_nats_users(self) -> bool:
        return self.issuer is not None

    def nats_user(self, dataplane_id: str, user_public_key: str) -> NatsGrant | None:
        """A NATS user for the agent, when we hold the account's signing key."""
        return self.issuer.issue(dataplane_id, user_public_key) if self.issuer is not None else None
