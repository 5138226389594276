"""What docker-compose.yml's NATS needs, made once on the host: operator mode and TLS, as `make up` runs it.

    .venv/bin/python deploy/docker/compose_secrets.py      # then: docker compose up --build

Writes `.landfall/compose/` (0700, files 0600), kept across runs so the same operator, accounts and
CA come out again (agents enrolled earlier keep working):

* `nats.conf`: operator mode (libs/runtime/natsauth.py: the operator, the system and application
  accounts preloaded, the `full` account resolver in /data/accounts on NATS's own volume) and TLS
  for clients with a certificate for `nats` from a CA of our own (libs/devstack/local_ca.py);
* `ca.crt`, `tls.crt`, `tls.key`, `operator.jwt`;
* `<service>.creds`: each service its own NATS user with only the subjects it uses (natsperms);
  `system.creds`: the system user that may only push account JWTs (the orchestrator's revocations);
* `orchestrator.env`: what the orchestrator mints agents' users and revokes them with (the account
  signing seed, the account, the operator signing seed), read by compose as its `env_file`.

Compose's one-shot `secrets` service copies them into the volume every container mounts at
/landfall, owned by the image's user (10001): a bind mount would keep the host's owner, whom the
containers' user cannot read as.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from libs.contracts.subjects import Subjects
from libs.devstack.local_ca import LocalCA
from libs.runtime.natsauth import RESOLVER_DIR_TOKEN, generate_nats_auth, write_secret
from libs.runtime.natsperms import SERVICES, service_permissions

MOUNT = "/landfall"  # where the containers see the files
RESOLVER_DIR = "/data/accounts"  # on the nats-data volume
HOSTS = ("nats", "localhost", "127.0.0.1")


def make(directory: Path) -> list[Path]:
    """Write (or keep) every file; answers the paths written."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    auth = generate_nats_auth(directory / "keys")
    ca = LocalCA(directory / "ca")
    cert = ca.server("nats", hosts=HOSTS)
    auth_config = auth.server_config.replace(
        json.dumps(str(directory / "keys" / "operator.jwt")), json.dumps(f"{MOUNT}/operator.jwt")
    ).replace(RESOLVER_DIR_TOKEN, RESOLVER_DIR)
    files = {
        "nats.conf": (
            "# docker-compose.yml's NATS: made by deploy/docker/compose_secrets.py, do not edit.\n"
            "tls {\n"
            f"  cert_file: {json.dumps(f'{MOUNT}/tls.crt')}\n"
            f"  key_file: {json.dumps(f'{MOUNT}/tls.key')}\n"
            "  timeout: 5\n"
            "}\n" + auth_config
        ),
        "operator.jwt": (directory / "keys" / "operator.jwt").read_text(),
        "ca.crt": ca.ca_file.read_text(),
        "tls.crt": cert.cert_file.read_text(),
        "tls.key": cert.key_file.read_text(),
        "system.creds": auth.system_creds_file().read_text(),
        "orchestrator.env": (
            f"LANDFALL_NATS_ACCOUNT_SIGNING_SEED={auth.account_signing_seed}\n"
            f"LANDFALL_NATS_ACCOUNT={auth.account}\n"
            f"LANDFALL_NATS_OPERATOR_SIGNING_SEED={auth.operator_signing_seed}\n"
        ),
    }
    subjects = Subjects("")
    for service in SERVICES:
        files[f"{service}.creds"] = auth.creds_file(
            service, service_permissions(subjects, service)
        ).read_text()
    written = []
    for name, text in files.items():
        path = directory / name
        write_secret(path, text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python deploy/docker/compose_secrets.py", description=(__doc__ or "")[:100]
    )
    parser.add_argument("--dir", type=Path, default=Path(".landfall/compose"), help="kept files (0600)")
    args = parser.parse_args(argv)
    paths = make(args.dir)
    print(f"wrote {len(paths)} files to {args.dir}; now: docker compose up --build", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
