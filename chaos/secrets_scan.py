"""Part 3b, secrets: every secret the run used, looked for where none may be.

Where: a `pg_dump` of the whole database (every service's schema), every
message (body and headers) of every JetStream stream, read with a full NATS
user, and every log file under the stack's directory (the four services, the
sandbox, and the servers' own logs).

What: the CI tokens, signing secrets, enrollment tokens, registry passwords
(also as the base64 `user:password` a docker config carries), the admin and
root Vault token and each service's own Vault token (`stack.vault_tokens`), every
NATS seed the stack holds (operator, accounts, signing key: keys.json; each
service user's .creds), and the agent's private key and NATS seed. Found means
found verbatim: hashes, prefixes and sealed boxes are fine, which is how the services are meant to keep them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from chaos.stack import PRIVATE_REGISTRY_USER, ChaosStack
from libs.runtime.natsauth import KEYS_FILE


@dataclass
class Finding:
    where: str
    secret: str  # a prefix of the secret only


@dataclass
class Scan:
    secrets: int = 0
    database_bytes: int = 0
    streams: dict[str, int] = field(default_factory=dict)
    log_files: int = 0
    log_lines: int = 0
    findings: list[Finding] = field(default_factory=list)
    # Canaries: values that must be found (a deployment id is in rows, messages and log lines alike),
    # to show that the scan reads what it claims to read. Source kind -> canaries seen there.
    canaries_seen: dict[str, set[str]] = field(default_factory=dict)

    @property
    def found(self) -> int:
        return len(self.findings)


def known_secrets(chaos: ChaosStack, extra: set[str]) -> set[str]:
    stack = chaos.stack
    found = {
        *extra,
        chaos.private_password,
        base64.b64encode(f"{PRIVATE_REGISTRY_USER}:{chaos.private_password}".encode()).decode(),
        stack.admin_token,
        stack.vault.token,
        stack.nats_auth.account_signing_seed,
    }
    found |= {t.token for t in stack.vault_tokens.values()}
    found |= _nats_seeds(stack.nats_auth.directory)
    if stack.org_key:
        found.add(stack.org_key)
    if stack.state.get("enrollment_token"):
        found.add(stack.state["enrollment_token"])
    agent_state = stack.root / "agent" / "agent.json"
    if agent_state.exists():
        data = json.loads(agent_state.read_text())
        found |= {v for k, v in data.items() if k in ("private_key", "nats_seed") and isinstance(v, str)}
    return {s for s in found if s and len(s) >= 8}


def _nats_seeds(directory: Path) -> set[str]:
    """The seeds in the NATS auth directory: keys.json's values and the seed line of every .creds."""
    seeds: set[str] = set()
    keys = directory / KEYS_FILE
    if keys.exists():
        seeds |= {v for v in json.loads(keys.read_text()).values() if isinstance(v, str)}
    for creds in directory.glob("*.creds"):
        # nkeys seeds are the only lines of a .creds file that start with "S" and are one token
        seeds |= {
            ln.strip() for ln in creds.read_text().splitlines() if ln.startswith("SU") and " " not in ln
        }
    return seeds


def _look(text: str, where: str, secrets: set[str], scan: Scan, canaries: Collection[str] = ()) -> None:
    """Search `text` whole (fast), and name the line of each hit."""
    kind = where.split(" ", 1)[0] if where.startswith(("pg_dump", "stream")) else "log"
    for canary in canaries:
        if canary in text:
            scan.canaries_seen.setdefault(kind, set()).add(canary)
    for secret in secrets:
        start = text.find(secret)
        while start != -1:
            line = text.count("\n", 0, start) + 1
            scan.findings.append(Finding(f"{where}:{line}", secret[:6] + "…"))
            start = text.find(secret, start + 1)


async def _streams(chaos: ChaosStack, secrets: set[str], scan: Scan, canaries: set[str]) -> None:
    stack = chaos.stack
    nc = await nats.connect(
        stack.nats.url, user_credentials=str(stack.nats_auth.creds_file("admin")), name="chaos-secret-scan"
    )
    try:
        js = nc.jetstream(timeout=10)
        for info in await js.streams_info():
            name = info.config.name
            assert name is not None
            total = int(info.state.messages)
            seen = 0
            if total:
                sub = await js.pull_subscribe(
                    "",
                    stream=name,
                    config=ConsumerConfig(
                        ack_policy=AckPolicy.NONE,
                        deliver_policy=DeliverPolicy.ALL,
                        inactive_threshold=60,
                    ),
                )
                try:
                    while seen < total:
                        try:
                            batch = await sub.fetch(500, timeout=5)
                        except nats.errors.TimeoutError:
                            break
                        for msg in batch:
                            seen += 1
                            text = msg.data.decode(errors="replace") + json.dumps(msg.headers or {})
                            where = f"stream {name} message {msg.metadata.sequence.stream}"
                            _look(text, where, secrets, scan, canaries)
                finally:
                    await sub.unsubscribe()
            scan.streams[name] = seen
            if seen < total:
                scan.findings.append(Finding(f"stream {name}: read only {seen} of {total} messages", ""))
    finally:
        await nc.close()


async def run(chaos: ChaosStack, used: set[str], *, canaries: frozenset[str] = frozenset()) -> Scan:
    secrets = known_secrets(chaos, used)
    scan = Scan(secrets=len(secrets))
    dump = chaos.stack.postgres.dump()
    scan.database_bytes = len(dump)
    _look(dump, "pg_dump", secrets, scan, set(canaries))
    await _streams(chaos, secrets, scan, set(canaries))
    for path in sorted(Path(chaos.stack.root).rglob("*.log")):
        text = path.read_text(errors="replace")
        scan.log_files += 1
        scan.log_lines += text.count("\n")
        _look(text, str(path.relative_to(chaos.stack.root)), secrets, scan, set(canaries))
    return scan
