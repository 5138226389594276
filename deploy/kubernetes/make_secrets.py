"""The Secrets the manifests read, made once and printed as YAML for `kubectl apply -f -`.

The manifests name Secrets and never hold a value (INSTALL.md lists each key). Most of them are
keys only Landfall uses, so this script makes them: the admin token, the command-signing seed, and
the whole NATS operator setup (operator, system and application accounts, the account signing key
the orchestrator mints agent users with, and one user per service with only the subjects it uses:
libs/runtime/natsauth.py and natsperms.py, the very code the local stack runs). The database URLs
and Vault tokens come from your PostgreSQL and OpenBao and are passed in.

What is subtle:
- Everything generated is kept in `--keys` (0600 files, default .landfall/install): run it again
  and the same operator and seeds come out, so agents enrolled earlier keep working. Keep that
  folder as you keep a root token (or delete it after storing the Secrets elsewhere).
- auth.conf names the operator JWT by the path where the NATS StatefulSet mounts the Secret
  (/etc/nats/auth), not where this script wrote it, and the account resolver's directory on each
  server's own volume (/data/accounts): pushed account JWTs (the orchestrator's revocations of
  agent users) live there across restarts.
- The orchestrator gets, besides the account signing key, the operator's signing key and a system
  user that may only push account JWTs (`landfall-nats-account`): that is how it revokes an agent.
- NATS speaks TLS to every client (`nats://` to a non-loopback address is refused by the services).
  By default the servers' certificate comes from a CA of this script's own (libs/devstack/local_ca.py,
  kept in `--keys`/nats-ca): the Secret `nats-tls` and, for an agent in this cluster, the CA as
  `landfall-agent-nats-ca`. With `--no-nats-tls` neither is printed: cert-manager (or you) issues
  `nats-tls` from your CA (INSTALL.md).
- The output holds secrets in clear: pipe it to kubectl, never to a file in the repository.

    python deploy/kubernetes/make_secrets.py --database-url credentials=postgresql://... \\
        --database-url webhook-gateway=... --database-url orchestrator=... \\
        --vault-token credentials=... --vault-token webhook-gateway=... \\
        --vault-token orchestrator=... | kubectl apply -f -
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import yaml

from libs.contracts.subjects import Subjects
from libs.devstack.local_ca import LocalCA
from libs.runtime.natsauth import RESOLVER_DIR_TOKEN, generate_nats_auth, write_secret
from libs.runtime.natsperms import SERVICES, service_permissions

NAMESPACE = "landfall"
AGENT_NAMESPACE = "landfall-system"
NATS_AUTH_MOUNT = "/etc/nats/auth"
NATS_RESOLVER_DIR = "/data/accounts"  # on each NATS server's own volume (nats/nats.yaml)
# Every name a client may use for a server of nats/nats.yaml (the Service and each pod)
NATS_HOSTS = (
    "nats",
    "nats.landfall",
    "nats.landfall.svc",
    "nats.landfall.svc.cluster.local",
    "*.nats.landfall.svc",
    "*.nats.landfall.svc.cluster.local",
    "localhost",
    "127.0.0.1",
)
DATABASE_USERS = ("credentials", "webhook-gateway", "orchestrator")
VAULT_USERS = ("credentials", "webhook-gateway", "orchestrator")


def _kept(path: Path, make: str) -> str:
    if not path.exists():
        write_secret(path, make)
    return path.read_text().strip()


def secret(name: str, data: dict[str, str], *, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "landfall"},
        },
        "type": "Opaque",
        "stringData": data,
    }


def _pairs(values: list[str], allowed: tuple[str, ...], flag: str) -> dict[str, str]:
    pairs = dict(value.split("=", 1) for value in values)
    unknown = set(pairs) - set(allowed)
    if unknown:
        raise SystemExit(f"{flag}: unknown service {sorted(unknown)}; one of {', '.join(allowed)}")
    return pairs


def make_secrets(
    keys: Path,
    *,
    database_urls: dict[str, str],
    vault_tokens: dict[str, str],
    bus_prefix: str = "",
    nats_tls: bool = True,
) -> list[dict[str, Any]]:
    """Every Secret the control plane reads; those of missing URLs or tokens are left out, and the
    NATS certificate's when `nats_tls` is False (cert-manager makes it)."""
    auth = generate_nats_auth(keys / "nats")
    operator_jwt = (keys / "nats" / "operator.jwt").read_text()
    server_config = auth.server_config.replace(
        json.dumps(str(keys / "nats" / "operator.jwt")), json.dumps(f"{NATS_AUTH_MOUNT}/operator.jwt")
    ).replace(RESOLVER_DIR_TOKEN, NATS_RESOLVER_DIR)
    subjects = Subjects(bus_prefix)
    creds = {
        f"{service}.creds": auth.creds_file(service, service_permissions(subjects, service)).read_text()
        for service in SERVICES
    }
    admin = _kept(keys / "admin-token", secrets.token_urlsafe(32))
    seed = _kept(keys / "command-signing-seed", base64.b64encode(os.urandom(32)).decode())
    made = [
        secret("landfall-admin", {"token": admin}),
        secret("landfall-command-signing", {"seed": seed}),
        secret("landfall-nats", creds),
        secret(
            "landfall-nats-account",
            {
                "signing-seed": auth.account_signing_seed,
                "account": auth.account,
                "operator-signing-seed": auth.operator_signing_seed,
                "system.creds": auth.system_creds_file().read_text(),
            },
        ),
        secret("landfall-nats-server", {"auth.conf": server_config, "operator.jwt": operator_jwt}),
    ]
    if nats_tls:
        ca = LocalCA(keys / "nats-ca")
        cert = ca.server("nats", hosts=NATS_HOSTS)
        ca_pem = ca.ca_file.read_text()
        made.append(
            secret(
                "nats-tls",
                {
                    "tls.crt": cert.cert_file.read_text(),
                    "tls.key": cert.key_file.read_text(),
                    "ca.crt": ca_pem,
                },
            )
        )
        made.append(secret("landfall-agent-nats-ca", {"ca.crt": ca_pem}, namespace=AGENT_NAMESPACE))
    if database_urls:
        made.append(secret("landfall-database", database_urls))
    if vault_tokens:
        made.append(secret("landfall-vault", vault_tokens))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python deploy/kubernetes/make_secrets.py", description=(__doc__ or "")[:62]
    )
    parser.add_argument("--keys", type=Path, default=Path(".landfall/install"), help="kept keys (0600)")
    parser.add_argument("--database-url", action="append", default=[], metavar="SERVICE=URL")
    parser.add_argument("--vault-token", action="append", default=[], metavar="SERVICE=TOKEN")
    parser.add_argument(
        "--no-nats-tls",
        action="store_true",
        help="print no nats-tls Secret: cert-manager (or you) issues it from your CA (INSTALL.md)",
    )
    args = parser.parse_args(argv)
    made = make_secrets(
        args.keys,
        database_urls=_pairs(args.database_url, DATABASE_USERS, "--database-url"),
        vault_tokens=_pairs(args.vault_token, VAULT_USERS, "--vault-token"),
        nats_tls=not args.no_nats_tls,
    )
    sys.stdout.write(yaml.safe_dump_all(made, sort_keys=False))
    print(f"# admin token: in {args.keys / 'admin-token'} (LANDFALL_ADMIN_TOKEN)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
