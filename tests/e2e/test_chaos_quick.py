"""`make chaos`, part 1, short: crashes and restarts lose nothing and apply nothing twice.

A few hundred CI webhooks over twenty components (a fifth on a private registry,
so their deploys need Vault; some signed) while the driver SIGKILLs and restarts
nats-server, PostgreSQL, the orchestrator and the gateway at random moments,
once with PostgreSQL and the orchestrator down together. Then, from the outside:
every 202 is one deployment that ended `succeeded` or `superseded`, the data
plane runs the newest accepted image of every component, no Deployment was
written twice for one deployment id (the sandbox Kubernetes API's request log),
and the gateway never answered a 500 (a 503 always came with Retry-After).
The definitions are in chaos/reconcile.py; the full size runs in `make chaos`.
After the run, none of the secrets it used is in a pg_dump, a JetStream message
or a log line (chaos/secrets_scan.py).
"""

from __future__ import annotations

import pytest

from chaos import crash, secrets_scan
from chaos.stack import ChaosStack


@pytest.mark.timeout(420)
async def test_crashes_lose_nothing_and_apply_nothing_twice(chaos_stack: ChaosStack) -> None:
    outcome = await crash.run(chaos_stack, crash.QUICK, say=print)
    figures = outcome.figures
    print(figures)
    r = outcome.result

    assert r.accepted == crash.QUICK.webhooks, r.gave_up[:5]
    assert r.lost == [], r.lost[:10]
    assert r.duplicated == {}, r.duplicated
    assert outcome.tally.five_hundreds == 0, outcome.tally.server_errors[:5]
    assert outcome.tally.unavailable_without_retry_after == 0
    assert outcome.tally.unexpected == [], outcome.tally.unexpected[:5]
    assert r.extra == [], r.extra[:10]
    assert r.merged == []
    assert r.wrong_image == [], r.wrong_image[:5]
    assert r.succeeded_without_write == []
    assert r.succeeded + r.superseded == r.accepted
    assert r.succeeded >= crash.QUICK.components  # at least the newest of every component ran
    assert outcome.driver_failures == []

    # It really was a crash run: the kills happened, and the gateway felt them.
    killed = {t for o in outcome.outages for t in o.event.targets}
    assert {"nats", "postgres", "orchestrator", "webhook_gateway"} <= killed
    assert all(o.restored_at is not None for o in outcome.outages)
    assert outcome.tally.responses[503] + outcome.tally.connection_errors > 0
    assert r.deployment_writes >= r.succeeded

    # Crashes leave no secret behind either: not in a row, a message or a log line.
    scan = await secrets_scan.run(chaos_stack, outcome.fleet.secrets)
    assert scan.findings == [], [vars(f) for f in scan.findings[:10]]
    assert sum(scan.streams.values()) >= 3 * crash.QUICK.webhooks
