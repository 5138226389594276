"""NATS users for agents: at enrollment, a user JWT that only reaches that data plane's subjects.

The agent sends the public half of an nkeys user key; we sign a user JWT for it
with the NATS account's signing key (`LANDFALL_NATS_ACCOUNT_SIGNING_SEED`), with
the permissions of `libs.runtime.natsauth.agent_permissions`. nats-server checks
them on every subscribe and publish, so an agent cannot read another data
plane's deploy commands or speak for it, whatever code it runs. The agent's
seed never reaches us; the JWT is not a secret without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.contracts.subjects import Subjects
from libs.runtime.natsauth import NKey, agent_inbox_prefix, agent_permissions, user_jwt


@dataclass(frozen=True)
class NatsGrant:
    jwt: str
    inbox_prefix: str


class AgentNatsIssuer:
    def __init__(self, *, signing_seed: str, account: str | None, subjects: Subjects) -> None:
        self._signer = NKey.from_seed(signing_seed, kind="account")
        self.account = account or self._signer.public_key
        self.subjects = subjects

    def issue(self, dataplane_id: str, user_public_key: str) -> NatsGrant:
        token = user_jwt(
            user_public_key,
            signer=self._signer,
            account=self.account,
            name=self.subjects.agent_durable(dataplane_id),
            permissions=agent_permissions(self.subjects, dataplane_id),
        )
        return NatsGrant(jwt=token, inbox_prefix=agent_inbox_prefix(dataplane_id))
