"""Agents' NATS identities expire, renew, and are revoked at once (issue 13), on a real nats-server.

The orchestrator runs with operator-mode NATS exactly as `make up` configures it (its user, the
account signing key, the operator signing key and a system user that may push the account JWT).
Agents are played by the production connection and renewal code (`libs.runtime.bus.connect`,
`services.data_plane_agent.usecases.renewal`); nats-server is the judge of what is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from pydantic import SecretStr

from libs.contracts import rpc
from libs.contracts.messages import AgentJwtRenew
from libs.runtime import bus as busmod
from libs.runtime.bus import RpcFailed
from libs.runtime.natsauth import NatsUser, NKey, RenewableUser, jwt_lifetime, sign_renewal
from libs.runtime.settings import ServiceSettings
from services.data_plane_agent.domain.identity import Identity
from services.data_plane_agent.usecases.renewal import JwtRenewer
from services.orchestrator.entrypoints import USECASES
from tests.integration.orchestrator.helpers import Harness, running_orchestrator
from tests.nats_auth import SecuredNats, connect_as, secured_nats
from tests.support import eventually

TTL = 3  # seconds: nats-server judges expiry in whole seconds


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredNats]:
    with secured_nats(tmp_path_factory.mktemp("identity-nats")) as s:
        yield s


@pytest.fixture
async def orch(secured: SecuredNats, base_env: dict[str, str]) -> AsyncIterator[Harness]:
    env = {
        **base_env,
        "LANDFALL_NATS_URL": secured.url,
        "LANDFALL_NATS_CREDS_FILE": str(secured.auth.creds_file("orchestrator")),
    }
    async with running_orchestrator(
        env,
        nats_account_signing_seed=SecretStr(secured.auth.account_signing_seed),
        nats_account=secured.auth.account,
        nats_operator_signing_seed=SecretStr(secured.auth.operator_signing_seed),
        nats_system_creds_file=secured.auth.system_creds_file(),
        agent_jwt_ttl_seconds=TTL,
    ) as harness:
        yield harness


@dataclass
class Enrolled:
    dataplane_id: str
    user: NatsUser


async def enroll(orch: Harness, token: str) -> Enrolled:
    key = NKey.generate("user")
    body = {
        "enrollment_token": token,
        "public_key": "A" * 43 + "=",
        "version": "t",
        "nats_user_public_key": key.public_key,
    }
    answer = await orch.ok("POST", "/v1/dataplanes/enroll", body)
    return Enrolled(
        answer["dataplane_id"], NatsUser(answer["nats_jwt"], key.seed, answer["nats_inbox_prefix"])
    )


async def new_plane(orch: Harness, org: str, name: str) -> Enrolled:
    plane = await orch.ok("POST", f"/v1/orgs/{org}/dataplanes", {"name": name}, 201)
    return await enroll(orch, plane["enrollment_token"])


async def agent_bus(secured: SecuredNats, orch: Harness, user: NatsUser | RenewableUser) -> busmod.Bus:
    nc = await busmod.connect(ServiceSettings(nats_url=secured.url), name="agent", wait_seconds=5, user=user)
    return busmod.Bus(nc, orch.subjects, timeout=2)


async def refusal(url: str, user: NatsUser) -> str | None:
    """One connect attempt as `user`: nats-server's refusal (lowercased), None when it let it in."""
    try:
        client = await connect_as(url, user)
    except (nats.errors.Error, OSError) as exc:
        return str(exc).lower()
    await client.nc.close()
    return None


async def expired(url: str, user: NatsUser) -> bool:
    """True when nats-server no longer lets `user` in: within the second of its `exp` it accepts the
    CONNECT then closes it ('User Authentication Expired'), after that it refuses it outright."""
    text = await refusal(url, user) or ""
    return "user authentication expired" in text or "authorization violation" in text


async def refused(url: str, user: NatsUser) -> bool:
    """True when nats-server refuses `user` as unknown or revoked ('Authorization Violation')."""
    return "authorization violation" in (await refusal(url, user) or "")


async def works(bus: busmod.Bus, orch: Harness, dataplane_id: str) -> bool:
    """The agent's user still does what an agent does: read its own consumer's info."""
    info = await bus.js.consumer_info(
        orch.subjects.dataplane_stream.name, orch.subjects.agent_durable(dataplane_id)
    )
    return bool(info.name == orch.subjects.agent_durable(dataplane_id))


async def test_a_renewing_agent_outlives_its_first_jwt_one_that_does_not_is_refused(
    orch: Harness, secured: SecuredNats
) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    renewing, lapsing = await new_plane(orch, "acme", "renews"), await new_plane(orch, "acme", "lapses")
    iat, exp = jwt_lifetime(renewing.user.jwt)
    assert exp is not None
    assert exp - iat == TTL  # LANDFALL_AGENT_JWT_TTL_SECONDS

    user = RenewableUser(renewing.user)
    renewer_bus = await agent_bus(secured, orch, user)
    lapsing_bus = await agent_bus(secured, orch, lapsing.user)
    identity = Identity.generate(renewing.dataplane_id)
    renewer = JwtRenewer(bus=renewer_bus, user=user, identity=identity, retry_seconds=0.2)
    first_jwt = renewing.user.jwt
    try:
        # Renewal is decided by the clock, not by waiting: due after two thirds of the lifetime.
        assert renewer.due_in(iat) == pytest.approx(TTL * 2 / 3)
        assert renewer.due_in(exp) == 0
        task = asyncio.create_task(renewer.run())
        try:
            # nats-server closes the connection whose JWT expired (it does not reconnect: refused)...
            await eventually(
                lambda: _closed(lapsing_bus.nc), timeout=TTL + 5, what="the lapsed JWT's connection to close"
            )
            # (nats-server checks `exp` on connect in whole seconds: it may admit one more in that second)
            await eventually(
                lambda: expired(secured.url, lapsing.user), timeout=2, what="the lapsed JWT refused"
            )
            # ... while the agent that renewed is still connected, past its first JWT's expiry.
            assert renewer.renewals >= 1
            assert user.current.jwt != first_jwt
            assert time.time() > exp
            assert await works(renewer_bus, orch, renewing.dataplane_id)
            first = NatsUser(first_jwt, renewing.user.seed)
            await eventually(lambda: expired(secured.url, first), timeout=2, what="the first JWT refused")
            assert renewer_bus.nc.is_connected
        finally:
            task.cancel()
    finally:
        await renewer_bus.nc.close()
        await lapsing_bus.nc.close()


async def _closed(nc: NATS) -> bool:
    return bool(nc.is_closed)


async def test_renewal_needs_the_enrolled_key_and_a_fresh_request(
    orch: Harness, secured: SecuredNats
) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    agent = await new_plane(orch, "acme", "main")
    bus = await agent_bus(secured, orch, agent.user)
    try:

        async def ask(seed: str, *, issued_at: int | None = None, dataplane_id: str | None = None) -> str:
            at = int(time.time()) if issued_at is None else issued_at
            dp = dataplane_id or agent.dataplane_id
            public_key, signature = sign_renewal(seed, dp, at)
            request = AgentJwtRenew(
                dataplane_id=dp, user_public_key=public_key, issued_at=at, signature=signature
            )
            try:
                reply = await bus.ask(rpc.AGENT_JWT_RENEW, request, timeout=2)
            except RpcFailed as exc:
                return exc.error.code
            return reply.jwt

        jwt = await ask(agent.user.seed)
        assert jwt_lifetime(jwt)[1] is not None  # a new JWT, for the same key
        assert RenewableUser(agent.user).replace(jwt).jwt == jwt
        assert await ask(NKey.generate("user").seed) == "not_found"  # not the plane's enrolled key
        assert await ask(agent.user.seed, issued_at=int(time.time()) - 3600) == "invalid"  # replayed later
        other = await new_plane(orch, "acme", "other")
        assert await ask(agent.user.seed, dataplane_id=other.dataplane_id) == "not_found"
    finally:
        await bus.nc.close()


async def test_re_enrolling_or_deleting_revokes_the_old_identity_at_once(
    orch: Harness, secured: SecuredNats
) -> None:
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    await orch.ok("POST", "/v1/orgs", {"name": "beta"}, 201)
    first = await new_plane(orch, "acme", "main")
    old_bus = await agent_bus(secured, orch, first.user)
    try:
        assert await works(old_bus, orch, first.dataplane_id)
        token = await orch.ok(
            "POST", f"/v1/orgs/acme/dataplanes/{first.dataplane_id}/enrollment-token", None, 201
        )
        again = await enroll(orch, token["enrollment_token"])
        assert again.dataplane_id == first.dataplane_id
        # Within 1 s of the answer: the old user is refused, and its live connection was dropped.
        await eventually(lambda: refused(secured.url, first.user), timeout=1.0, what="the old user refused")
        await eventually(lambda: _closed(old_bus.nc), timeout=1.0, what="the old connection dropped")
        assert await refusal(secured.url, again.user) is None  # the new identity works
        # A replica whose clock is far behind pushes too (at its start): still every revocation, and
        # an `iat` above the last push's, so no server keeps an older account JWT over it.
        planes = orch.client.app[USECASES].dataplanes
        planes.clock = lambda: 1.0
        assert await planes.push_revocations()
        assert await refused(secured.url, first.user)
        async with planes.store.transaction() as tx:
            assert await tx.dataplanes.claim_push(1) > time.time()
    finally:
        await old_bus.nc.close()

    # Deleting: viewer and developer may not, another org's plane is not found, in use is 409.
    viewer = (await orch.api_key("acme", "viewer"))["key"]
    developer = (await orch.api_key("acme", "developer"))["key"]
    beta_owner = (await orch.api_key("beta", "owner"))["key"]
    path = f"/v1/orgs/acme/dataplanes/{first.dataplane_id}"
    for token_ in (viewer, developer):
        status, problem, _ = await orch.call("DELETE", path, token=token_)
        assert status == 403, problem
    status, problem, _ = await orch.call(
        "DELETE", f"/v1/orgs/beta/dataplanes/{first.dataplane_id}", token=beta_owner
    )
    assert status == 404, problem
    await orch.ok(
        "POST",
        "/v1/orgs/acme/environments",
        {"name": "production", "dataplane_id": first.dataplane_id, "order": 1},
        201,
    )
    status, problem, _ = await orch.call("DELETE", path)
    assert status == 409, problem
    assert problem["type"].endswith("/dataplane_in_use")
    assert "production" in problem["detail"]

    unused = await new_plane(orch, "acme", "spare")
    live = await agent_bus(secured, orch, unused.user)
    try:
        owner = (await orch.api_key("acme", "owner"))["key"]
        await orch.call("DELETE", f"/v1/orgs/acme/dataplanes/{unused.dataplane_id}", expect=204, token=owner)
        await eventually(
            lambda: refused(secured.url, unused.user), timeout=1.0, what="the deleted plane's user refused"
        )
        await eventually(lambda: _closed(live.nc), timeout=1.0, what="the deleted plane's connection dropped")
    finally:
        await live.nc.close()
    await orch.call("GET", f"/v1/orgs/acme/dataplanes/{unused.dataplane_id}", expect=404)
    with pytest.raises(nats.js.errors.NotFoundError):  # its consumer went with it
        await orch.bus.js.consumer_info(
            orch.subjects.dataplane_stream.name, orch.subjects.agent_durable(unused.dataplane_id)
        )
    await orch.call("DELETE", f"/v1/orgs/acme/dataplanes/{unused.dataplane_id}", expect=404)
    item = await orch.audited("acme", "the deletion", action="dataplane.delete", outcome="ok")
    assert item["target"] == unused.dataplane_id
    document = await orch.ok("GET", "/openapi.json")
    delete = document["paths"]["/v1/orgs/{org}/dataplanes/{id}"]["delete"]
    assert {"204", "403", "404", "409"} <= set(delete["responses"])
    assert "dataplane_in_use" in delete["summary"]


async def test_a_revocation_older_than_any_jwt_leaves_the_account_and_a_recent_one_stays(
    orch: Harness, secured: SecuredNats
) -> None:
    """Every re-enrollment adds a revocation to the account JWT; one older than the longest JWT
    lifetime allowed revokes nothing alive, so the next push drops it (the account stays bounded)."""
    await orch.ok("POST", "/v1/orgs", {"name": "acme"}, 201)
    first = await new_plane(orch, "acme", "main")
    keys = []
    for _ in range(2):  # two re-enrollments: two revoked keys
        token = await orch.ok(
            "POST", f"/v1/orgs/acme/dataplanes/{first.dataplane_id}/enrollment-token", None, 201
        )
        keys.append((await enroll(orch, token["enrollment_token"])).user)
    old_key, recent_key = NKey.from_seed(first.user.seed).public_key, NKey.from_seed(keys[0].seed).public_key
    planes = orch.client.app[USECASES].dataplanes
    async with planes.store.transaction() as tx:
        assert {old_key, recent_key} <= set(await tx.dataplanes.nats_revocations())
        await tx.dataplanes.execute(  # as if the first revocation were 90 days and 2 hours old
            "UPDATE nats_revocations SET revoked_at = now() - interval '90 days 2 hours'"
            " WHERE user_public_key = $1",
            old_key,
        )
    assert await planes.push_revocations()
    async with planes.store.transaction() as tx:
        kept = await tx.dataplanes.nats_revocations()
    assert old_key not in kept
    assert recent_key in kept
    assert await refused(secured.url, keys[0])  # the pushed account still revokes the recent one
    assert await refusal(secured.url, keys[1]) is None  # and the plane's current identity works
