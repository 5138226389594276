"""NATS JWTs and nkeys as nats-server reads them, and the least-privilege grant of an agent."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import nkeys
import pytest

from libs.contracts.ids import new_id
from libs.contracts.subjects import Subjects
from libs.runtime.natsauth import (
    RESOLVER_DIR_TOKEN,
    NatsAuthError,
    NKey,
    Permissions,
    account_jwt,
    agent_inbox_prefix,
    agent_permissions,
    creds_text,
    decode_jwt,
    generate_nats_auth,
    operator_jwt,
    user_jwt,
)
from libs.runtime.settings import ServiceSettings
from services.orchestrator.clients.nats_accounts import AccountPublisher


def _parts(token: str) -> tuple[dict[str, object], dict[str, object], bytes]:
    def unb64(text: str) -> bytes:
        assert "=" not in text  # base64url without padding
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    header, claims, signature = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(claims)), unb64(signature)


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a trailing `>` one or more."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def test_keys_have_the_nkeys_prefix_of_their_kind() -> None:
    for kind, letter in (("operator", "O"), ("account", "A"), ("user", "U")):
        key = NKey.generate(kind)  # type: ignore[arg-type]
        assert key.public_key.startswith(letter)
        assert len(key.public_key) == 56
        assert key.seed.startswith("S" + letter)
        assert NKey.from_seed(key.seed) == key
        assert key.seed not in repr(key)
    with pytest.raises(NatsAuthError, match="not an account seed"):
        NKey.from_seed(NKey.generate("user").seed, kind="account")
    with pytest.raises(NatsAuthError):
        NKey.from_seed("SUnot-a-seed")


def test_a_user_jwt_is_signed_by_the_account_signing_key_and_verifies_with_nkeys() -> None:
    account, signing, user = NKey.generate("account"), NKey.generate("account"), NKey.generate("user")
    perms = Permissions(pub_allow=("a.b", "c.>"), sub_allow=("_INBOX_x.>",))
    token = user_jwt(
        user.public_key, signer=signing, account=account.public_key, name="u1", permissions=perms
    )

    header, claims, signature = _parts(token)
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}
    assert claims["iss"] == signing.public_key
    assert claims["sub"] == user.public_key
    assert claims["name"] == "u1"
    assert isinstance(claims["iat"], int)
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) == 52
    assert claims["nats"] == {
        "pub": {"allow": ["a.b", "c.>"]},
        "sub": {"allow": ["_INBOX_x.>"]},
        "subs": -1,
        "data": -1,
        "payload": -1,
        "type": "user",
        "issuer_account": account.public_key,
        "version": 2,
    }
    signing_input = token.rsplit(".", 1)[0].encode()
    assert nkeys.from_seed(bytearray(signing.seed.encode())).verify(signing_input, signature)
    assert decode_jwt(token) == claims


def test_a_tampered_jwt_does_not_verify() -> None:
    account, user = NKey.generate("account"), NKey.generate("user")
    token = user_jwt(user.public_key, signer=account, account=account.public_key, name="u")
    header, claims, signature = token.split(".")
    widened = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    widened["nats"]["pub"] = {"allow": [">"]}
    forged = base64.urlsafe_b64encode(json.dumps(widened).encode()).rstrip(b"=").decode()
    with pytest.raises(NatsAuthError, match="signature"):
        decode_jwt(f"{header}.{forged}.{signature}")
    with pytest.raises(NatsAuthError):
        decode_jwt("not.a-jwt")


def test_a_user_signed_by_the_account_itself_names_no_issuer_account() -> None:
    account, user = NKey.generate("account"), NKey.generate("user")
    claims = decode_jwt(user_jwt(user.public_key, signer=account, account=account.public_key, name="svc"))
    assert "issuer_account" not in claims["nats"]
    assert claims["nats"]["pub"] == {}
    assert claims["nats"]["sub"] == {}
    with pytest.raises(NatsAuthError, match="user public key"):
        user_jwt(account.public_key, signer=account, account=account.public_key, name="x")


def test_operator_and_account_jwts() -> None:
    operator, system, app = NKey.generate("operator"), NKey.generate("account"), NKey.generate("account")
    op = decode_jwt(operator_jwt(operator, name="op", system_account=system.public_key))
    assert op["iss"] == op["sub"] == operator.public_key
    assert op["nats"] == {"system_account": system.public_key, "type": "operator", "version": 2}

    sys_claims = decode_jwt(account_jwt(system.public_key, operator=operator, name="SYS", jetstream=False))
    assert sys_claims["iss"] == operator.public_key
    assert "disk_storage" not in sys_claims["nats"]["limits"]  # no JetStream in the system account

    signing = NKey.generate("account")
    claims = decode_jwt(
        account_jwt(
            app.public_key, operator=operator, name="APP", jetstream=True, signing_keys=(signing.public_key,)
        )
    )
    limits = claims["nats"]["limits"]
    assert limits["mem_storage"] == limits["disk_storage"] == limits["streams"] == limits["consumer"] == -1
    assert claims["nats"]["signing_keys"] == [signing.public_key]
    assert claims["nats"]["type"] == "account"


def test_an_agent_may_only_touch_its_own_data_plane() -> None:
    subjects = Subjects("t1.")
    mine, other = new_id("dp"), new_id("dp")
    perms = agent_permissions(subjects, mine)
    stream = subjects.dataplane_stream.name

    assert subjects.status(mine) in perms.pub_allow
    assert subjects.heartbeat(mine) in perms.pub_allow
    # Its inbox, and its own in-cluster resolution requests (answered once each: `responses`).
    assert perms.sub_allow == (f"{agent_inbox_prefix(mine)}.>", subjects.resolve(mine))
    assert perms.responses
    others = [
        subjects.deploy(other),
        subjects.resolve(other),
        subjects.deploy(mine),  # not even its own commands: only the orchestrator sends those
        subjects.status(other),
        subjects.heartbeat(other),
        f"$JS.API.CONSUMER.INFO.{stream}.{subjects.agent_durable(other)}",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{subjects.agent_durable(other)}",
        f"$JS.ACK.{stream}.{subjects.agent_durable(other)}.1.1.1.1.0",
        f"$JS.API.CONSUMER.CREATE.{stream}.{subjects.agent_durable(mine)}.{subjects.deploy(mine)}",
        f"$JS.API.STREAM.CREATE.{stream}",
        f"{agent_inbox_prefix(other)}.abc",
        "_INBOX.abc",
    ]
    for subject in others:
        allowed = [p for p in (*perms.pub_allow, *perms.sub_allow) if subject_matches(p, subject)]
        assert not allowed, (subject, allowed)


def test_generated_keys_are_kept_private_and_reused(tmp_path: Path) -> None:
    first = generate_nats_auth(tmp_path / "auth")
    keys = tmp_path / "auth" / "keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    # an account resolver that takes pushed account JWTs (revocations), each server its own directory
    assert "type: full" in first.server_config
    assert "allow_delete: false" in first.server_config
    assert RESOLVER_DIR_TOKEN in first.server_config
    assert first.account in first.server_config
    assert first.system_account in first.server_config
    for seed in (first.account_signing_seed, first.operator_signing_seed, first.system_account_seed):
        assert seed not in first.server_config
        assert seed not in repr(first)

    creds = first.creds_file("orchestrator")
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    text = creds.read_text()
    token = text.split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0]
    claims = decode_jwt(token)
    assert claims["nats"]["issuer_account"] == first.account

    again = generate_nats_auth(tmp_path / "auth")
    assert (again.operator, again.account, again.account_signing_seed) == (
        first.operator,
        first.account,
        first.account_signing_seed,
    )
    assert again.creds_file("orchestrator").read_text() == text
    assert again.operator_signing_seed == first.operator_signing_seed
    # the system user may push account JWTs and nothing else
    sys_claims = _creds_claims(again.system_creds_file())
    assert sys_claims["iss"] == again.system_account
    assert sys_claims["nats"]["pub"] == {
        "allow": ["$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE"]
    }


def _creds_claims(path: Path) -> dict[str, Any]:
    token = path.read_text().split("-----BEGIN NATS USER JWT-----\n")[1].split("\n")[0]
    return decode_jwt(token)


def test_an_account_jwt_lists_its_revocations_and_a_pushed_one_is_always_newer(tmp_path: Path) -> None:
    auth = generate_nats_auth(tmp_path / "auth")
    operator = NKey.from_seed(auth.operator_signing_seed, kind="operator")
    signing = NKey.from_seed(auth.account_signing_seed, kind="account").public_key
    user = NKey.generate("user").public_key
    publisher = AccountPublisher(
        settings=ServiceSettings(),
        operator_signer=operator,
        account=auth.account,
        account_signing_keys=(signing,),
        clock=lambda: 1000.0,
    )
    first, second = decode_jwt(publisher.account_jwt({user: 990})), decode_jwt(publisher.account_jwt({}))
    assert first["nats"]["revocations"] == {user: 990}
    assert first["iss"] == operator.public_key  # the operator's signing key, listed in the operator JWT
    assert first["nats"]["signing_keys"] == [signing]
    assert "revocations" not in second["nats"]
    assert (first["iat"], second["iat"]) == (1000, 1001)  # never equal, whatever the clock says


def test_creds_text_has_the_jwt_and_the_seed_where_clients_look_for_them() -> None:
    text = creds_text("JWT", "SEED")
    lines = text.splitlines()
    assert lines[lines.index("-----BEGIN NATS USER JWT-----") + 1] == "JWT"
    assert lines[lines.index("-----BEGIN USER NKEY SEED-----") + 1] == "SEED"
