"""Agent identities without servers: renewal proofs, when to renew (an injected clock), tls:// only."""

from __future__ import annotations

from typing import cast

import pytest

from libs.runtime.bus import Bus, PlaintextRefused, check_plaintext, connect
from libs.runtime.natsauth import (
    NatsAuthError,
    NatsUser,
    NKey,
    RenewableUser,
    decode_jwt,
    encode_jwt,
    sign_renewal,
    user_jwt,
    verify_renewal,
)
from libs.runtime.settings import ServiceSettings
from services.data_plane_agent.domain.identity import Identity
from services.data_plane_agent.usecases.renewal import JwtRenewer


def _user(*, iat: int, exp: int | None) -> tuple[NKey, NatsUser]:
    account = NKey.generate("account")
    key = NKey.generate("user")
    jwt = user_jwt(key.public_key, signer=account, account=account.public_key, name="a", expires_at=exp)
    # user_jwt stamps iat with the real clock: re-issue with the one this test wants
    claims = decode_jwt(jwt)
    jwt = encode_jwt(
        subject=key.public_key,
        name="a",
        nats={k: v for k, v in claims["nats"].items() if k != "version"},
        signer=account,
        expires_at=exp,
        issued_at=iat,
    )
    return key, NatsUser(jwt, key.seed, "_INBOX_dp_x")


def test_a_renewal_proof_holds_for_its_key_plane_and_time_only() -> None:
    key = NKey.generate("user")
    public, signature = sign_renewal(key.seed, "dp_a", 1000)
    assert public == key.public_key
    assert verify_renewal("dp_a", public, 1000, signature)
    assert not verify_renewal("dp_b", public, 1000, signature)  # another plane
    assert not verify_renewal("dp_a", public, 1001, signature)  # another time
    assert not verify_renewal("dp_a", NKey.generate("user").public_key, 1000, signature)  # another key
    assert not verify_renewal("dp_a", public, 1000, "not-base64!")
    assert not verify_renewal("dp_a", "UNOTAKEY", 1000, signature)


def _renewer(user: NatsUser) -> JwtRenewer:
    # `due_in` reads only the JWT: no bus is needed to decide when to renew
    return JwtRenewer(bus=cast(Bus, None), user=RenewableUser(user), identity=Identity.generate("dp_x"))


def test_renewal_is_due_after_two_thirds_of_the_lifetime_by_the_clock() -> None:
    renewer = _renewer(_user(iat=1000, exp=1300)[1])
    assert renewer.due_in(1000) == 200
    assert renewer.due_in(1150) == 50
    assert renewer.due_in(1250) == 0
    assert renewer.left(1250) == 50
    assert _renewer(_user(iat=1000, exp=None)[1]).due_in(0) is None  # a JWT that never expires


def test_a_renewable_user_takes_only_a_jwt_for_its_own_key() -> None:
    key, user = _user(iat=1000, exp=1300)
    renewable = RenewableUser(user)
    _, other = _user(iat=1000, exp=1600)
    with pytest.raises(NatsAuthError):
        renewable.replace(other.jwt)
    assert renewable.current == user
    account = NKey.generate("account")
    fresh = user_jwt(key.public_key, signer=account, account=account.public_key, name="a", expires_at=2000)
    assert renewable.replace(fresh).jwt == fresh
    assert renewable.current.seed == key.seed
    assert renewable.current.inbox_prefix == "_INBOX_dp_x"


@pytest.mark.parametrize(
    "url",
    [
        "nats://127.0.0.1:4222",
        "nats://localhost:4222",
        "nats://[::1]:4222",
        "127.0.0.2:4222",
        "tls://nats:4222",
    ],
)
def test_plain_nats_is_allowed_on_loopback_and_tls_anywhere(url: str) -> None:
    check_plaintext([url])


@pytest.mark.parametrize(
    "url", ["nats://nats:4222", "nats://10.0.0.1:4222", "nats.example.com:4222", "nats://[fd00::1]:4222"]
)
def test_plain_nats_to_another_address_is_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(PlaintextRefused, match=r"LANDFALL_NATS_URL.*tls://"):
        check_plaintext(["nats://127.0.0.1:4222", url])


async def test_connect_refuses_plain_nats_to_another_address_before_any_attempt() -> None:
    settings = ServiceSettings(nats_url="nats://10.0.0.1:4222")
    with pytest.raises(PlaintextRefused, match="LANDFALL_NATS_URL"):
        await connect(settings, name="test", wait_seconds=60)  # no 60 s of retries: refused at once
