"""Enrollment gives the agent its own NATS user, limited to its data plane (operator-mode NATS)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nats.js.errors
import pytest
from pydantic import SecretStr

from libs.contracts.messages import AgentHeartbeat, utcnow
from libs.runtime import bus as busmod
from libs.runtime.natsauth import NatsUser, NKey, decode_jwt
from libs.runtime.settings import ServiceSettings
from tests.integration.orchestrator.helpers import Harness, running_orchestrator
from tests.nats_auth import SecuredNats, secured_nats
from tests.support import eventually


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
    with secured_nats(tmp_path_factory.mktemp("secured-nats")) as s:
        yield s


def orchestrator_env(base_env: dict[str, str], secured: SecuredNats) -> dict[str, str]:
    return {
        **base_env,
        "LANDFALL_NATS_URL": secured.url,
        "LANDFALL_NATS_CREDS_FILE": str(secured.auth.creds_file("orchestrator")),
    }


async def enroll(orch: Harness, token: str, **extra: Any) -> tuple[int, Any]:
    body = {"enrollment_token": token, "public_key": "A" * 43 + "=", "version": "t", **extra}
    status, answer, _ = await orch.call("POST", "/v1/dataplanes/enroll", body, token=None)
    return status, answer


async def test_enrollment_returns_a_nats_user_for_that_data_plane_only(
    secured: SecuredNats, base_env: dict[str, str]
) -> None:
    async with running_orchestrator(
        orchestrator_env(base_env, secured),
        nats_account_signing_seed=SecretStr(secured.auth.account_signing_seed),
        nats_account=secured.auth.account,
    ) as orch:
        world = await orch.provision(enroll=False)
        dp, s = world.dataplane_id, orch.subjects

        status, problem = await enroll(orch, world.enrollment_token, nats_user_public_key="UNOTAKEY")
        assert status == 422, problem
        assert problem["errors"][0]["field"] == "nats_user_public_key"

        key = NKey.generate("user")
        status, body = await enroll(orch, world.enrollment_token, nats_user_public_key=key.public_key)
        assert status == 200, body  # the refused attempt did not use up the token
        assert body["nats_inbox_prefix"] == f"_INBOX_{dp}"
        assert key.seed not in str(body)
        claims = decode_jwt(body["nats_jwt"])
        assert claims["sub"] == key.public_key
        assert claims["nats"]["type"] == "user"
        assert claims["nats"]["issuer_account"] == secured.auth.account
        pub, sub = claims["nats"]["pub"]["allow"], claims["nats"]["sub"]["allow"]
        assert s.status(dp) in pub
        assert s.heartbeat(dp) in pub
        assert s.deploy(dp) not in pub
        # its own plane's subjects only, and the renewal RPC (the signature by its key decides there)
        assert all(dp in subject for subject in pub if subject != s.rpc_agent_jwt_renew), pub
        assert s.rpc_agent_jwt_renew in pub
        assert claims["exp"] > claims["iat"]  # it expires (LANDFALL_AGENT_JWT_TTL_SECONDS)
        # its own inbox, and its own in-cluster resolution subject (answered once per request)
        assert sub == [f"_INBOX_{dp}.>", s.resolve(dp)]
        assert claims["nats"]["resp"]["max"] == 1

        # The orchestrator made the consumer the agent may only bind to.
        info = await orch.bus.js.consumer_info(s.dataplane_stream.name, s.agent_durable(dp))
        assert info.config.filter_subject == s.deploy(dp)
        assert info.config.max_ack_pending == busmod.AGENT_MAX_ACK_PENDING

        # nats-server accepts the minted user, and its heartbeat reaches the orchestrator.
        user = NatsUser(body["nats_jwt"], key.seed, body["nats_inbox_prefix"])
        nc = await busmod.connect(
            ServiceSettings(nats_url=secured.url), name="agent", wait_seconds=5, user=user
        )
        try:
            agent = busmod.Bus(nc, s)
            await agent.js.consumer_info(s.dataplane_stream.name, s.agent_durable(dp))
            await agent.publish(
                s.heartbeat(dp), AgentHeartbeat(dataplane_id=dp, version="t", sent_at=utcnow())
            )

            async def connected() -> bool:
                planes = await orch.ok("GET", f"/v1/orgs/{world.org}/dataplanes")
                return bool(planes["items"][0]["agent"]["connected"])

            await eventually(connected, what="the agent's heartbeat to be recorded")
        finally:
            await nc.close()

        # An agent that sends no NATS key gets no NATS user (it connects as its settings say).
        plane = await orch.ok("POST", f"/v1/orgs/{world.org}/dataplanes", {"name": "second"}, 201)
        status, body = await enroll(orch, plane["enrollment_token"])
        assert status == 200, body
        # no NATS user fields; the command signing keys come with every enrollment (the agent pins them)
        assert set(body) == {"dataplane_id", "org", "name", "command_keys"}


async def test_a_consumer_an_older_orchestrator_made_gets_today_s_settings_at_the_next_start(
    secured: SecuredNats, base_env: dict[str, str]
) -> None:
    """An agent whose consumer still allows one command in flight (made before AGENT_MAX_ACK_PENDING)
    gets its components' commands in parallel again after the orchestrator's next start, without
    enrolling again; a plane that never enrolled gets no consumer from it."""
    env = orchestrator_env(base_env, secured)
    seeds = {
        "nats_account_signing_seed": SecretStr(secured.auth.account_signing_seed),
        "nats_account": secured.auth.account,
    }
    async with running_orchestrator(env, **seeds) as orch:
        world = await orch.provision(enroll=False)
        key = NKey.generate("user")
        status, body = await enroll(orch, world.enrollment_token, nats_user_public_key=key.public_key)
        assert status == 200, body
        unenrolled = await orch.ok("POST", f"/v1/orgs/{world.org}/dataplanes", {"name": "later"}, 201)
        s = orch.subjects
        stream, durable = s.dataplane_stream.name, s.agent_durable(world.dataplane_id)
        old = (await orch.bus.js.consumer_info(stream, durable)).config
        old.max_ack_pending = 1  # what an older orchestrator made
        await orch.bus.js.add_consumer(stream, config=old)
        assert (await orch.bus.js.consumer_info(stream, durable)).config.max_ack_pending == 1
    async with running_orchestrator(env, **seeds) as orch:

        async def updated() -> bool:
            info = await orch.bus.js.consumer_info(stream, durable)
            return bool(info.config.max_ack_pending == busmod.AGENT_MAX_ACK_PENDING)

        await eventually(updated, what="the consumer updated at start")
        with pytest.raises(nats.js.errors.NotFoundError):
            await orch.bus.js.consumer_info(stream, s.agent_durable(unenrolled["id"]))
