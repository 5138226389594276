"""`make chaos`, part 1, short: crashes and restarts lose nothing and apply nothing twice.

A few hundred CI webhooks over twenty components (a fifth on a private registry,
so their deploys need Vault; some signed) while the driver SIGKILLs and restarts
every part once at a random moment: nats-server, PostgreSQL, OpenBao, the four
services (the agent too) and the data plane's Kubernetes API, and once PostgreSQL
and the orchestrator together. Then, from the outside:
every 202 is one deployment that ended `succeeded` or `superseded`, the data
plane runs the newest accepted image of every component, no Deployment was
written twice for one deployment id (the sandbox Kubernetes API's request log),
and the gateway never answered a 500 (a 503 always came with Retry-After).
Beside the webhooks, a few components get per-environment config changes (replicas, env, a
secret set, changed or deleted): every rollout a PUT answered ends well, none is doubled, the
data plane runs the last config set, and no planted secret value is found anywhere.
The definitions are in chaos/reconcile.py; the full size runs in `make chaos`.
After the run, none of the secrets it used is in a pg_dump, a JetStream message
or a log line (chaos/secrets_scan.py), and a canary secret planted in each of
those places is found exactly there.

The checker is shown to fail, too: a second, small run beside an intruder that
joins the orchestrator's durable consumer, acks one webhook's event and drops it
(an orchestrator that loses a message) must be reported lost.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import asyncpg
import nats
import nats.errors
import pytest
from nats.aio.client import Client

from chaos import crash, driver, secrets_scan
from chaos.stack import ChaosStack
from libs.contracts.messages import ImagePushed
from libs.contracts.subjects import ORCHESTRATOR_INTAKE_DURABLE, Subjects

# A run too small to take long, without kills: only the planted fault can lose anything.
BROKEN = crash.CrashPlan(
    components=3,
    webhooks=12,
    rate=4.0,
    tags=2,
    settle_timeout=60.0,
    kills=driver.Kills(singles_each=0, pairs=0, agent_away=False),
)


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

    # Config changes during the kills: every rollout an answer named ended well, none twice, and
    # the data plane runs the last config set (replicas, env, the env Secret's names and values).
    assert r.config_changes == crash.QUICK.config_changes, [c.failures for c in outcome.changes]
    assert r.config_lost == [], r.config_lost[:5]
    assert r.config_doubled == [], r.config_doubled
    assert r.wrong_config == [], r.wrong_config
    assert outcome.config_tally.five_hundreds == 0, outcome.config_tally.server_errors[:5]
    assert any(a["deployment_id"] for c in outcome.changes for a in c.answered)

    # It really was a crash run: the kills happened, and the gateway felt them.
    killed = {t for o in outcome.outages for t in o.event.targets}
    assert set(crash.QUICK.kills.targets) <= killed
    assert {"credentials", "openbao", "data_plane_agent", driver.KUBE_API} <= killed
    assert all(o.restored_at is not None for o in outcome.outages)
    assert outcome.tally.responses[503] + outcome.tally.connection_errors > 0
    assert outcome.unavailable_outside_outages == 0  # a 503 only while something was down
    assert r.deployment_writes >= r.succeeded

    # Crashes leave no secret behind either: not in a row, a message or a log line.
    scan = await secrets_scan.run(chaos_stack, outcome.fleet.secrets)
    assert scan.findings == [], [vars(f) for f in scan.findings[:10]]
    assert sum(scan.streams.values()) >= 3 * crash.QUICK.webhooks

    # ... and the scan finds a secret where one is planted: a row, a message, a log line.
    canary = "canary-" + secrets.token_urlsafe(18)
    planted = await _plant(chaos_stack, canary)
    try:
        scan = await secrets_scan.run(chaos_stack, outcome.fleet.secrets | {canary})
    finally:
        await _unplant(chaos_stack, planted)
    where = sorted(f.where for f in scan.findings)
    assert len(where) == 3, where
    log_hit, dump_hit, stream_hit = where  # sorted: logs/…, pg_dump:…, stream …
    assert dump_hit.startswith("pg_dump:")
    assert log_hit == f"{planted.relative_to(chaos_stack.stack.root)}:2"
    assert stream_hit == "stream CHAOS_CANARY message 1:1"
    assert {f.secret for f in scan.findings} == {canary[:6] + "…"}


async def _plant(chaos: ChaosStack, canary: str) -> Path:
    stack = chaos.stack
    conn = await asyncpg.connect(stack.postgres.dsn)
    try:
        await conn.execute("CREATE SCHEMA chaos_canary; CREATE TABLE chaos_canary.planted (value text)")
        await conn.execute("INSERT INTO chaos_canary.planted VALUES ($1)", canary)
    finally:
        await conn.close()
    nc = await _admin_nats(chaos)
    try:
        js = nc.jetstream()
        await js.add_stream(name="CHAOS_CANARY", subjects=["chaos.canary"])
        await js.publish("chaos.canary", json.dumps({"leaked": canary}).encode())
    finally:
        await nc.close()
    log = stack.root / "logs" / "planted.log"
    log.write_text(f"an innocent line\nleaked {canary} here\n")
    return log


async def _unplant(chaos: ChaosStack, log: Path) -> None:
    conn = await asyncpg.connect(chaos.stack.postgres.dsn)
    try:
        await conn.execute("DROP SCHEMA IF EXISTS chaos_canary CASCADE")
    finally:
        await conn.close()
    nc = await _admin_nats(chaos)
    try:
        await nc.jetstream().delete_stream("CHAOS_CANARY")
    finally:
        await nc.close()
    log.unlink(missing_ok=True)


async def _admin_nats(chaos: ChaosStack) -> Client:
    stack = chaos.stack
    return await nats.connect(
        stack.nats.url, user_credentials=str(stack.nats_auth.creds_file("admin")), name="chaos-canary"
    )


@pytest.mark.timeout(240)
async def test_the_crash_check_catches_an_orchestrator_that_drops_a_message(
    chaos_stack: ChaosStack,
) -> None:
    subjects = Subjects(chaos_stack.stack.bus_prefix)
    stolen: list[str] = []

    async def intruder() -> None:
        """Take one event from the orchestrator's own durable consumer, ack it, and drop it."""
        nc = await _admin_nats(chaos_stack)
        try:
            sub = await nc.jetstream().pull_subscribe_bind(
                ORCHESTRATOR_INTAKE_DURABLE, stream=subjects.intake_stream.name
            )
            for _ in range(12):  # a minute at most, then the assertion below says it stole nothing
                if stolen:
                    break
                try:
                    (msg,) = await sub.fetch(1, timeout=5)
                except nats.errors.TimeoutError:
                    continue
                event = ImagePushed.model_validate_json(msg.data)
                if event.project == "broken":
                    stolen.append(event.deployment_id)
                    await msg.ack()
                else:
                    await msg.nak()  # not this run's: leave it to the orchestrator
        finally:
            await nc.close()

    outcome = await crash.run(chaos_stack, BROKEN, say=print, project="broken", during=intruder)
    r = outcome.result
    assert len(stolen) == 1
    assert r.accepted == BROKEN.webhooks
    assert [(lost["deployment_id"], lost["status"]) for lost in r.lost] == [(stolen[0], "unknown")]
    assert not r.ok
    assert not outcome.ok
    # Nothing else went wrong: the lost webhook is the only finding.
    assert r.duplicated == {}
    assert r.extra == []
    assert r.succeeded_without_write == []
    assert r.succeeded + r.superseded == r.accepted - 1
    # A 202 the orchestrator never recorded ranks below every recorded one, so each component
    # runs its newest recorded deployment: the loss is reported once, as lost.
    assert r.wrong_image == [], r.wrong_image
