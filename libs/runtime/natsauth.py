"""NATS decentralized auth (operator mode): nkeys, JWTs and the permissions of each party.

Why this exists
---------------
An agent runs in a customer's cluster and holds a NATS connection to us. If every agent shared one
NATS user, a compromised agent could read every other data plane's deploy commands (pull secrets are
sealed, but images, env and names are not) and forge their rollout reports. So each enrolled agent
gets its *own* NATS user, and nats-server itself enforces that this user may only:

* read the info of, fetch from and ack its own durable consumer (`agent-<dp>` on the DATAPLANE
  stream, filtered to `deploy(<dp>)`), which the orchestrator creates at enrollment. Not create
  or update it: a consumer's config may name a push `deliver_subject`, and the server does not
  check that the creator may publish there (nats-server issue 8274);
* publish its own status (JetStream) and heartbeat (core NATS) subjects;
* subscribe only below its own inbox prefix `_INBOX_<dp>.` (replies to its requests and fetches),
  so it cannot listen to the replies another client asked for.

How
---
nats-server runs in operator mode: it trusts one operator JWT; the operator signs the account JWTs
(preloaded, into a `full` account resolver that also takes pushed updates and keeps them in a
directory per server); an account *signing key* signs user JWTs. The orchestrator holds that signing
key's seed and mints a user JWT at enrollment for the public user key the agent sent; the agent's
seed never leaves the agent. Services (gateway, orchestrator, credentials) are users of the same
account, each with only the subjects it uses (`natsperms.service_permissions`).

An agent's JWT expires (`exp`); the agent renews it before then by signing a request with its user
seed (`sign_renewal`/`verify_renewal`) and reconnects with the new one (`RenewableUser`). To revoke
an agent at once (its plane enrolled again or deleted), the orchestrator re-signs the account JWT with
`revocations` (`app_account_jwt`, with an operator *signing key*) and pushes it as a system-account
user that may do nothing else (`claims_update_permissions`); the preloaded account is issued at
`iat` 1, so a pushed one is always newer and a restarted server or stack keeps it.

What is subtle
--------------
* Format (nats-io/jwt v2): `base64url(header).base64url(claims).base64url(ed25519 signature)`, no
  padding, header `{"typ":"JWT","alg":"ed25519-nkey"}`; `jti` is base32 (no padding) of SHA-512/256
  over the standard claims with an empty `jti`; the NATS-specific part lives under `"nats"` with
  `"type"` and `"version": 2`. A user JWT signed by a signing key names its account in
  `issuer_account`.
* An account has JetStream only when its limits give it storage (`mem_storage`/`disk_storage` != 0);
  -1 means unlimited. The system account must not have JetStream.
* The server matches permissions on subjects, so the subjects the agent may use are spelled out
  exactly here (the JetStream API subjects nats-py really uses), never with a wildcard that could
  reach another data plane's consumer or inbox.
* NATS does not check reply subjects: an agent can still make the server deliver *its own*
  deploy commands to any subject (a fetch whose reply is, say, another plane's status subject).
  It cannot choose their content, and the orchestrator drops a report that does not parse or
  arrives on the wrong plane's subject.
* A JWT is not a secret (it only works with the seed that signs the server's nonce); a seed is.
"""

from __future__ import annotations

import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

# The key pairs and the token format live in natsjwt; callers import them from here as well.
from libs.runtime.natsjwt import NO_LIMIT as NO_LIMIT
from libs.runtime.natsjwt import NatsAuthError as NatsAuthError
from libs.runtime.natsjwt import NKey as NKey
from libs.runtime.natsjwt import b64url, unb64url
from libs.runtime.natsjwt import decode_jwt as decode_jwt
from libs.runtime.natsjwt import encode_jwt as encode_jwt
from libs.runtime.natsjwt import is_user_public_key as is_user_public_key
from libs.runtime.natsjwt import public_key_bytes as public_key_bytes

# What each party may do lives in natsperms; callers import it from here as well.
from libs.runtime.natsperms import FULL_PERMISSIONS as FULL_PERMISSIONS
from libs.runtime.natsperms import SERVICES as SERVICES
from libs.runtime.natsperms import Permissions as Permissions
from libs.runtime.natsperms import agent_inbox_prefix as agent_inbox_prefix
from libs.runtime.natsperms import agent_permissions as agent_permissions
from libs.runtime.natsperms import service_permissions as service_permissions

# --------------------------------------------------------------------------------------------------
# Claims: operator, account, user
# --------------------------------------------------------------------------------------------------


def operator_jwt(
    operator: NKey,
    *,
    name: str,
    system_account: str,
    signing_keys: tuple[str, ...] = (),
    issued_at: int | None = None,
) -> str:
    nats: dict[str, Any] = {"system_account": system_account, "type": "operator"}
    if signing_keys:
        nats["signing_keys"] = list(signing_keys)
    return encode_jwt(subject=operator.public_key, name=name, nats=nats, signer=operator, issued_at=issued_at)


def account_jwt(
    account_public_key: str,
    *,
    operator: NKey,
    name: str,
    jetstream: bool,
    signing_keys: tuple[str, ...] = (),
    revocations: Mapping[str, int] | None = None,
    issued_at: int | None = None,
) -> str:
    """An account signed by the operator (or one of its signing keys). `revocations`: user public
    key -> unix time; nats-server refuses (and disconnects) that user's JWTs issued at or before it."""
    limits: dict[str, Any] = {
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
        "imports": NO_LIMIT,
        "exports": NO_LIMIT,
        "wildcards": True,
        "conn": NO_LIMIT,
        "leaf": NO_LIMIT,
    }
    if jetstream:
        limits.update(mem_storage=NO_LIMIT, disk_storage=NO_LIMIT, streams=NO_LIMIT, consumer=NO_LIMIT)
    nats: dict[str, Any] = {
        "limits": limits,
        "default_permissions": {"pub": {}, "sub": {}},
        "type": "account",
    }
    if signing_keys:
        nats["signing_keys"] = list(signing_keys)
    if revocations:
        nats["revocations"] = dict(sorted(revocations.items()))
    return encode_jwt(subject=account_public_key, name=name, nats=nats, signer=operator, issued_at=issued_at)


def app_account_jwt(
    account_public_key: str,
    *,
    operator_signer: NKey,
    signing_keys: tuple[str, ...],
    revocations: Mapping[str, int] | None = None,
    issued_at: int | None = None,
) -> str:
    """The application account (JetStream on), as `generate_nats_auth` makes it and as the
    orchestrator re-signs it with its revocations: one definition, so a push changes nothing else."""
    return account_jwt(
        account_public_key,
        operator=operator_signer,
        name=APP_ACCOUNT_NAME,
        jetstream=True,
        signing_keys=signing_keys,
        revocations=revocations,
        issued_at=issued_at,
    )


def user_jwt(
    user_public_key: str,
    *,
    signer: NKey,
    account: str,
    name: str,
    permissions: Permissions = FULL_PERMISSIONS,
    expires_at: int | None = None,
) -> str:
    """A user of `account`, signed by the account key itself or one of its signing keys."""
    public_key_bytes(user_public_key, "user")
    nats: dict[str, Any] = {
        **permissions.claims(),
        "subs": NO_LIMIT,
        "data": NO_LIMIT,
        "payload": NO_LIMIT,
        "type": "user",
    }
    if signer.public_key != account:
        nats["issuer_account"] = account
    return encode_jwt(subject=user_public_key, name=name, nats=nats, signer=signer, expires_at=expires_at)


# --------------------------------------------------------------------------------------------------
# Credentials as a client uses them
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NatsUser:
    """What a client needs to connect as a JWT user: the JWT, its seed and its inbox prefix."""

    jwt: str
    seed: str = field(repr=False)
    inbox_prefix: str | None = None

    def creds(self) -> str:
        return creds_text(self.jwt, self.seed)


class RenewableUser:
    """A `NatsUser` whose JWT can be replaced while connected (an agent renewing before `exp`).

    `bus.connect` reads `current` at every (re)connect, so after `replace` a reconnect presents the
    new JWT; the seed, and so the user's identity, never changes."""

    def __init__(self, user: NatsUser) -> None:
        self._user = user

    @property
    def current(self) -> NatsUser:
        return self._user

    def replace(self, jwt: str) -> NatsUser:
        """Take `jwt` if it is a JWT for this user's own key; `NatsAuthError` otherwise."""
        claims = decode_jwt(jwt)
        if claims.get("sub") != NKey.from_seed(self._user.seed, kind="user").public_key:
            raise NatsAuthError("the JWT is for another user key")
        self._user = NatsUser(jwt, self._user.seed, self._user.inbox_prefix)
        return self._user


def jwt_lifetime(jwt: str) -> tuple[int, int | None]:
    """`(iat, exp)` of a JWT (exp None: it never expires). The signature is checked."""
    claims = decode_jwt(jwt)
    exp = claims.get("exp")
    return int(claims.get("iat", 0)), int(exp) if isinstance(exp, int) else None


RENEWAL_CONTEXT = "landfall.v1.agent-jwt.renew"


def renewal_message(dataplane_id: str, user_public_key: str, issued_at: int) -> bytes:
    """What an agent signs (with its nkeys user seed) to ask for a new JWT for that same key."""
    return f"{RENEWAL_CONTEXT}\n{dataplane_id}\n{user_public_key}\n{issued_at}".encode()


def sign_renewal(seed: str, dataplane_id: str, issued_at: int) -> tuple[str, str]:
    """`(user public key, base64url signature)` proving the agent holds the seed."""
    key = NKey.from_seed(seed, kind="user")
    return key.public_key, b64url(key.sign(renewal_message(dataplane_id, key.public_key, issued_at)))


def verify_renewal(dataplane_id: str, user_public_key: str, issued_at: int, signature: str) -> bool:
    try:
        raw = public_key_bytes(user_public_key, "user")
        VerifyKey(raw).verify(renewal_message(dataplane_id, user_public_key, issued_at), unb64url(signature))
    except (NatsAuthError, BadSignatureError, ValueError, binascii.Error):
        return False
    return True


def creds_text(jwt: str, seed: str) -> str:
    """The `.creds` file format that nats-server tools and every NATS client read."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n"
        "\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n"
        "\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed}\n"
        "------END USER NKEY SEED------\n"
        "\n"
        "*************************************************************\n"
    )


def write_secret(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600, atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# A whole operator setup (the local stack and the tests)
# --------------------------------------------------------------------------------------------------

KEYS_FILE = "keys.json"
OPERATOR_JWT_FILE = "operator.jwt"
APP_ACCOUNT_NAME = "LANDFALL"
# nats-server's account resolver keeps pushed account JWTs in a directory of its own; each server of
# a cluster needs its own, so the shared config names it with this token and each server replaces it
# (libs/devstack/servers/nats.py; deploy/ writes a path of the pod's volume).
RESOLVER_DIR_TOKEN = "@LANDFALL_RESOLVER_DIR@"


def claims_update_permissions() -> Permissions:
    """A system-account user that may only push account JWTs (the orchestrator's revocations)."""
    return Permissions(
        pub_allow=("$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE"), sub_allow=(INBOX_ALL,)
    )


INBOX_ALL = "_INBOX.>"


@dataclass(frozen=True)
class NatsAuthConfig:
    """An operator, a system account and the application account, with creds for full users.

    `server_config` goes into nats-server's config (`NatsServer(config_extra=...)`);
    `account_signing_seed` and `account` are what the orchestrator needs to mint agent users;
    `operator_signing_seed` and `system_creds_file()` what it needs to push the account's
    revocations (`$SYS.REQ.CLAIMS.UPDATE`).
    """

    directory: Path
    server_config: str
    operator: str
    system_account: str
    account: str
    account_signing_seed: str = field(repr=False)
    operator_signing_seed: str = field(default="", repr=False)
    system_account_seed: str = field(default="", repr=False)

    def creds_file(self, user: str, permissions: Permissions = FULL_PERMISSIONS) -> Path:
        """A creds file (0600) for a user of the application account with `permissions`.

        Kept while its JWT grants exactly `permissions` (a running service keeps its user across
        restarts of the stack); minted again when they changed."""
        signer = NKey.from_seed(self.account_signing_seed, kind="account")
        return self._creds(self.directory / f"{user}.creds", user, permissions, signer, self.account)

    def system_creds_file(self, user: str = "claims-update") -> Path:
        """A creds file for a system-account user that may only push account JWTs."""
        signer = NKey.from_seed(self.system_account_seed, kind="account")
        path = self.directory / f"sys-{user}.creds"
        return self._creds(path, user, claims_update_permissions(), signer, self.system_account)

    @staticmethod
    def _creds(path: Path, user: str, permissions: Permissions, signer: NKey, account: str) -> Path:
        if not path.exists() or _granted(path.read_text()) != _granted_claims(permissions.claims()):
            key = NKey.generate("user")
            token = user_jwt(
                key.public_key, signer=signer, account=account, name=user, permissions=permissions
            )
            write_secret(path, creds_text(token, key.seed))
        return path

    def mint(
        self,
        name: str,
        permissions: Permissions,
        *,
        inbox_prefix: str | None = None,
        expires_at: int | None = None,
    ) -> NatsUser:
        key = NKey.generate("user")
        signer = NKey.from_seed(self.account_signing_seed, kind="account")
        token = user_jwt(
            key.public_key,
            signer=signer,
            account=self.account,
            name=name,
            permissions=permissions,
            expires_at=expires_at,
        )
        return NatsUser(token, key.seed, inbox_prefix)


def _granted_claims(nats: dict[str, Any]) -> dict[str, Any]:
    return {k: nats.get(k) for k in ("pub", "sub", "resp")}


def _granted(creds: str) -> dict[str, Any] | None:
    """The permissions in a creds file's JWT (None when it does not parse)."""
    lines = creds.splitlines()
    try:
        token = lines[lines.index("-----BEGIN NATS USER JWT-----") + 1]
        return _granted_claims(decode_jwt(token).get("nats", {}))
    except (ValueError, IndexError, NatsAuthError):
        return None


def resolver_config(directory: str) -> str:
    """nats-server's account resolver that takes pushed account JWTs (`$SYS.REQ.CLAIMS.UPDATE`) and
    keeps them in `directory` across restarts; never deletes one (`allow_delete: false`)."""
    return (
        "resolver: {\n"
        "  type: full\n"
        f"  dir: {json.dumps(directory)}\n"
        "  allow_delete: false\n"
        '  interval: "2m"\n'
        '  timeout: "1.9s"\n'
        "}\n"
    )


# The operator and preloaded account JWTs are issued "long ago", at a fixed time: a JWT the orchestrator
# pushed (with revocations) is always newer, so a restart never puts the preloaded one back over it,
# and the same kept keys always give the same config, byte for byte (ed25519 signatures are
# deterministic).
PRELOAD_IAT = 1


def generate_nats_auth(directory: Path, *, operator_name: str = "landfall") -> NatsAuthConfig:
    """Keys made once and kept in `directory/keys.json` (0600), so JWTs minted earlier stay valid.

    The account JWTs are preloaded; the resolver keeps the newest JWT of each account it was given
    (preloaded or pushed), so a pushed one with revocations survives a restart of nats-server, and the
    orchestrator pushes its own again at every start (its database is where revocations live)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys_path = directory / KEYS_FILE
    if keys_path.exists():
        seeds: dict[str, str] = json.loads(keys_path.read_text())
    else:
        seeds = {
            "operator": NKey.generate("operator").seed,
            "system_account": NKey.generate("account").seed,
            "account": NKey.generate("account").seed,
            "account_signing": NKey.generate("account").seed,
        }
        for stale in directory.glob("*.creds"):  # signed by keys that are gone
            stale.unlink()
    if "operator_signing" not in seeds:  # keys.json from before revocations: add the key, keep the rest
        seeds["operator_signing"] = NKey.generate("operator").seed
    write_secret(keys_path, json.dumps(seeds, indent=2))
    operator = NKey.from_seed(seeds["operator"], kind="operator")
    operator_signing = NKey.from_seed(seeds["operator_signing"], kind="operator")
    system = NKey.from_seed(seeds["system_account"], kind="account")
    account = NKey.from_seed(seeds["account"], kind="account")
    signing = NKey.from_seed(seeds["account_signing"], kind="account")

    operator_path = directory / OPERATOR_JWT_FILE
    operator_path.write_text(
        operator_jwt(
            operator,
            name=operator_name,
            system_account=system.public_key,
            signing_keys=(operator_signing.public_key,),
            issued_at=PRELOAD_IAT,
        )
    )
    system_jwt = account_jwt(
        system.public_key, operator=operator, name="SYS", jetstream=False, issued_at=PRELOAD_IAT
    )
    app_jwt = app_account_jwt(
        account.public_key,
        operator_signer=operator,
        signing_keys=(signing.public_key,),
        issued_at=PRELOAD_IAT,
    )
    server_config = (
        "# Operator mode: every client is a JWT user of an account below (libs/runtime/natsauth.py).\n"
        "# A service's JWT lists each subject it may use (the orchestrator's is ~3.5 KB), and it travels\n"
        "# in the CONNECT line, which the default 4 KB control-line limit would refuse.\n"
        "max_control_line: 16KB\n"
        f"operator: {json.dumps(str(operator_path))}\n"
        f"system_account: {system.public_key}\n"
        + resolver_config(RESOLVER_DIR_TOKEN)
        + "resolver_preload: {\n"
        f"  {system.public_key}: {json.dumps(system_jwt)}\n"
        f"  {account.public_key}: {json.dumps(app_jwt)}\n"
        "}\n"
    )
    return NatsAuthConfig(
        directory=directory,
        server_config=server_config,
        operator=operator.public_key,
        system_account=system.public_key,
        account=account.public_key,
        account_signing_seed=signing.seed,
        operator_signing_seed=operator_signing.seed,
        system_account_seed=system.seed,
    )
