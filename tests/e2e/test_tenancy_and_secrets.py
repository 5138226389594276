"""`make chaos`, part 3, short: tenancy holds for every endpoint, and no secret lands anywhere.

1. The matrix of chaos/matrix.py (tests/e2e/test_tenancy_matrix.py says what it is) as
   `make chaos` runs it: every operation of every service's /openapi.json, by every kind of
   caller, on both orgs' objects; no breach, and the objects refused changes aimed at intact.
2. The secret scan of chaos/secrets_scan.py over a pg_dump of the whole
   database, every message of every JetStream stream and every log file: none
   of the secrets used (CI tokens, signing secrets, enrollment tokens, registry
   passwords, admin and Vault tokens, NATS seeds, the agent's key) is there.
   A canary (a deployment id, which is in all three) proves the scan reads them.
   (test_chaos_quick.py runs the same scan after its crash run.)

The NATS side of tenancy (an agent using its own NATS identity to publish
another data plane's status, or to read its deploy subject, is refused by the
server) is tests/integration/test_nats_permissions.py.
"""

from __future__ import annotations

import aiohttp
import pytest

from bench.client import Admin
from chaos import evidence, load, provision, secrets_scan, tenancy
from chaos.stack import ChaosStack


@pytest.mark.timeout(180)
async def test_the_tenancy_matrix_holds_on_the_chaos_stack(chaos_stack: ChaosStack) -> None:
    """The matrix of test_tenancy_matrix.py, with the orgs' components on a private registry."""
    matrix, _ = await tenancy.run(chaos_stack, say=print)
    assert matrix.breaches == [], [vars(c) for c in matrix.breaches[:10]]
    assert matrix.integrity == []
    assert matrix.broken_controls == [], [vars(c) for c in matrix.broken_controls[:10]]
    assert matrix.operations >= 35  # every management operation of the three HTTP APIs


@pytest.mark.timeout(300)
async def test_no_secret_in_the_database_the_streams_or_the_logs(chaos_stack: ChaosStack) -> None:
    # Traffic of its own, so that the scan has secrets to miss even when run alone: private-registry
    # pulls (pull secrets sealed from Vault), signed webhooks, CI tokens; then tenancy's secrets.
    fleet = await provision.provision(chaos_stack, components=10, tags=2, prefix="s", project="secrets")
    hooks = load.plan(fleet.targets, 30, seed=11)
    tally = await load.run(chaos_stack.stack.url("webhook_gateway"), hooks, rate=10)
    assert tally.responses[202] == 30
    stack = chaos_stack.stack
    async with aiohttp.ClientSession() as session:
        admin = Admin.for_stack(session, stack)
        histories = await evidence.wait_until_settled(admin, "secrets", fleet.targets, timeout=120)
    assert all(d["status"] == "succeeded" for items in histories.values() for d in items[:1])
    _, used = await tenancy.run(chaos_stack, say=print)

    canary = hooks[-1].deployment_id
    assert canary is not None
    scan = await secrets_scan.run(chaos_stack, fleet.secrets | used, canaries=frozenset({canary}))
    assert scan.findings == [], [vars(f) for f in scan.findings[:10]]
    assert scan.secrets >= 20  # ten CI tokens, signing secrets, passwords, tokens, seeds, keys
    assert scan.database_bytes > 0
    assert sum(scan.streams.values()) >= 3 * len(hooks)  # intake, deploy and status messages
    assert scan.log_lines > 0
    # The scan reads what it says it reads: the canary is in a row, a message and a log line.
    assert set(scan.canaries_seen) == {"pg_dump", "stream", "log"}, scan.canaries_seen
