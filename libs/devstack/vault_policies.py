"""The Vault (OpenBao) policy of each service, and the per-service tokens the local stack makes.

Nothing trusts more than it must: the credentials service reaches the registry secrets
(`<mount>/<prefix>/orgs/...`) and may only *read* the per-environment config secrets
(`<prefix>/config/...`, to seal them to a data plane), the gateway only the webhook signing secrets
(`<mount>/<prefix>/gateway/signing/...`), the orchestrator may only *write* config secrets (create,
patch, and delete a component's: it takes values from a `PUT …/config` and never reads one back),
and the data-plane agent gets no Vault token at all. The policy texts live here, once, so an install
can print and load the very text the stack and the tests use:

    python -m libs.devstack.vault_policies credentials --mount secret --prefix landfall \\
        | bao policy write landfall-credentials -

What is subtle:

* KV v2 splits one secret over three API paths: `data/` (write a version, read it), `metadata/`
  (`DELETE` destroys every version: `KvStore.destroy`) and `destroy/` (destroy one version: undoing
  a write whose database commit failed). A policy must name the API paths, never the logical one.
* A policy glob (`orgs/*`) is a prefix match, so it covers every org below it and nothing beside it:
  `<prefix>/gateway/...` is outside `<prefix>/orgs/*` and the other way round.
* A write-only token needs KV v2's `PATCH` (capability `patch`) for "change some secrets, keep the
  others": hvac's own `patch` reads first, `KvStore.patch` does not.
* No `list` anywhere: no service lists secrets, it knows each path from its own database.
* Tokens are made with `no_default_policy`, so the default policy's extras (cubbyhole, response
  wrapping, `sys/tools`) are not granted either; the two token paths every service needs (readiness
  looks its own token up, a renewal renews it) are granted by each policy itself.
* Why tokens and not AppRole here: the stack holds the root token anyway and hands each process its
  environment, so a token made for that process is the whole login; an AppRole role_id/secret_id
  would only move the same secret one step. Tokens are orphans (revoking the root token that made
  them must not revoke a running stack's services) with a TTL of `TOKEN_TTL`, made again at every
  stack start; the previous start's tokens are revoked then (by accessor: the stack keeps no old
  token). Each service renews its own token at half its TTL (`KvStore.start_renewal`); production
  installs use AppRole or Kubernetes auth with the same policies (docker-compose.yml).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from libs.devstack.servers.errors import ServerError
from libs.devstack.servers.plumbing import http_request

# Below `<mount>/<kind>/<prefix>/`: the subtree each service's own secrets live in.
SERVICE_SUBTREES: Mapping[str, str] = {
    "credentials": "orgs",  # services/credentials/store/secrets.py
    "webhook_gateway": "gateway/signing",  # services/webhook_gateway/store/secrets.py
    "orchestrator": "config",  # services/orchestrator/store/secrets.py (write-only)
}
CONFIG_SUBTREE = "config"
# (subtree, KV v2 API kind, capabilities) of each service; what a service owns it may also destroy.
_OWN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data", ("create", "read", "update")),
    ("metadata", ("delete",)),
    ("destroy", ("update",)),
)
RULES: Mapping[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "credentials": (*(("orgs", k, c) for k, c in _OWN), (CONFIG_SUBTREE, "data", ("read",))),
    "webhook_gateway": tuple(("gateway/signing", k, c) for k, c in _OWN),
    "orchestrator": (
        (CONFIG_SUBTREE, "data", ("create", "update", "patch")),
        (CONFIG_SUBTREE, "metadata", ("delete",)),
    ),
}
# Services that never talk to Vault: they get neither a policy nor a token.
NO_VAULT = ("data_plane_agent",)
TOKEN_TTL = "768h"  # OpenBao's default maximum TTL (32 days): longer than any local stack runs


@dataclass(frozen=True)
class ServiceToken:
    """A token made for one service; `accessor` revokes it later without knowing the token."""

    service: str
    policy: str
    token: str
    accessor: str


def policy_name(service: str, prefix: str = "landfall") -> str:
    """`<prefix>-<service>`: one policy per service and per prefix (tests use a prefix per test)."""
    return f"{prefix.strip('/').replace('/', '-')}-{service.replace('_', '-')}"


def policy_hcl(service: str, *, mount: str = "secret", prefix: str = "landfall") -> str:
    """The HCL policy of `service` for secrets on `mount` below `prefix` (the VaultSettings values)."""
    try:
        rules = RULES[service]
    except KeyError:
        raise ValueError(f"{service!r} has no Vault policy: only {', '.join(RULES)} use Vault") from None
    mount, prefix = mount.strip("/"), prefix.strip("/")
    text = f"# Landfall {service}: below {prefix}/ on the {mount} KV v2 mount, only what it needs.\n"
    for subtree, kind, capabilities in rules:
        listed = ", ".join(f'"{c}"' for c in capabilities)
        text += f'path "{mount}/{kind}/{prefix}/{subtree}/*" {{\n  capabilities = [{listed}]\n}}\n'
    return (
        text + 'path "auth/token/lookup-self" {\n  capabilities = ["read"]\n}\n'
        'path "auth/token/renew-self" {\n  capabilities = ["update"]\n}\n'
    )


def _call(addr: str, token: str, method: str, path: str, payload: object = None) -> Any:
    response = http_request(
        method,
        f"{addr}/v1/{path}",
        body=json.dumps(payload).encode() if payload is not None else None,
        headers={"X-Vault-Token": token, "Content-Type": "application/json"},
    )
    if not 200 <= response.status < 300:
        # The path and status only: an answer of a token call may echo what was sent.
        raise ServerError(f"{method} /v1/{path} answered {response.status}")
    return response.json()


def make_service_tokens(
    addr: str,
    root_token: str,
    *,
    mount: str = "secret",
    prefix: str = "landfall",
    services: Iterable[str] = tuple(RULES),
    ttl: str = TOKEN_TTL,
    revoke: Iterable[str] = (),
) -> dict[str, ServiceToken]:
    """Write each service's policy and make it an orphan token with only that policy.

    `revoke` are accessors of tokens made before (a previous stack start): each is revoked first,
    one that is gone already is fine. Needs a token that may write policies and make orphan tokens
    (the root token)."""
    for accessor in revoke:
        response = http_request(
            "POST",
            f"{addr}/v1/auth/token/revoke-accessor",
            body=json.dumps({"accessor": accessor}).encode(),
            headers={"X-Vault-Token": root_token, "Content-Type": "application/json"},
        )
        # 2xx (OpenBao answers 200 for one that expired or was revoked already), 400: an unknown accessor
        if not (200 <= response.status < 300 or response.status == 400):
            raise ServerError(f"revoking an old service token answered {response.status}")
    made: dict[str, ServiceToken] = {}
    for service in services:
        name = policy_name(service, prefix)
        _call(
            addr,
            root_token,
            "PUT",
            f"sys/policies/acl/{name}",
            {"policy": policy_hcl(service, mount=mount, prefix=prefix)},
        )
        answer = _call(
            addr,
            root_token,
            "POST",
            "auth/token/create-orphan",
            {
                "policies": [name],
                "no_default_policy": True,
                "ttl": ttl,
                "renewable": True,
                "display_name": service.replace("_", "-"),
                "meta": {"service": service},
            },
        )
        auth = answer["auth"]
        made[service] = ServiceToken(service, name, auth["client_token"], auth["accessor"])
    return made


def main(argv: list[str] | None = None) -> int:
    """Print a service's policy, for `bao policy write <name> -` in an install."""
    parser = argparse.ArgumentParser(prog="python -m libs.devstack.vault_policies", description=main.__doc__)
    parser.add_argument("service", choices=sorted(RULES))
    parser.add_argument("--mount", default="secret", help="LANDFALL_VAULT_MOUNT of the service")
    parser.add_argument("--prefix", default="landfall", help="LANDFALL_VAULT_PREFIX of the service")
    args = parser.parse_args(argv)
    sys.stdout.write(policy_hcl(args.service, mount=args.mount, prefix=args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
