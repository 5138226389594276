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
  (/etc/nats/auth), not where this script wrote it.
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
from libs.runtime.natsauth import generate_nats_auth, write_secret
from libs.runtime.natsperms import SERVICES, service_permissions

NAMESPACE = "landfall"
NATS_AUTH_MOUNT = "/etc/nats/auth"
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
    keys: Path, *, database_urls: dict[str, str], vault_tokens: dict[str, str], bus_prefix: str = ""
) -> list[dict[str, Any]]:
    """Every Secret the control plane reads; those of missing URLs or tokens are left out."""
    auth = generate_nats_auth(keys / "nats")
    operator_jwt = (keys / "nats" / "operator.jwt").read_text()
    server_config = auth.server_config.replace(
        json.dumps(str(keys / "nats" / "operator.jwt")), json.dumps(f"{NATS_AUTH_MOUNT}/operator.jwt")
    )
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
        secret("landfall-nats-account", {"signing-seed": auth.account_signing_seed, "account": auth.account}),
        secret("landfall-nats-server", {"auth.conf": server_config, "operator.jwt": operator_jwt}),
    ]
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
    args = parser.parse_args(argv)
    made = make_secrets(
        args.keys,
        database_urls=_pairs(args.database_url, DATABASE_USERS, "--database-url"),
        vault_tokens=_pairs(args.vault_token, VAULT_USERS, "--vault-token"),
    )
    sys.stdout.write(yaml.safe_dump_all(made, sort_keys=False))
    print(f"# admin token: in {args.keys / 'admin-token'} (LANDFALL_ADMIN_TOKEN)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
