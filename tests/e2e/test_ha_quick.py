"""`make chaos`, the cluster part, short: the HA stack (three nats-servers as one JetStream cluster,
two replicas of each service behind the front door) loses nothing when a NATS server and a replica die.

150 webhooks over ten components while the driver SIGKILLs one NATS node and, later, one
orchestrator replica, and restarts each. Then, from the outside (chaos/reconcile.py): every 202
ended `succeeded` or `superseded`, nothing was applied twice, no 5xx, a 503 only with Retry-After
and only while something was down, and every replica of every service did part of the work
(counted by its own /metrics).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from chaos import cluster
from chaos.stack import ChaosStack
from libs.contracts.subjects import Subjects
from libs.devstack.servers.nats_cluster import NatsCluster
from libs.devstack.stack import HTTP_SERVICES, Stack
from libs.runtime import bus as busmod
from libs.runtime.settings import ServiceSettings


@pytest.fixture(scope="module")
def ha_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosStack]:
    root = tmp_path_factory.mktemp("ha")
    chaos = cluster.start(root / "stack", private_password="chaos-" + secrets.token_urlsafe(18))
    try:
        yield chaos
    finally:
        chaos.stop()


async def stream_replicas(stack: Stack) -> dict[str, int]:
    """Each stream's replicas, as the services made them (read as the operator's NATS user)."""
    settings = ServiceSettings(nats_url=stack.nats.url, nats_creds_file=stack.nats_auth.creds_file("admin"))
    nc = await busmod.connect(settings, name="test-ha", wait_seconds=10)
    try:
        js = nc.jetstream()
        return {
            spec.name: (await js.stream_info(spec.name)).config.num_replicas or 1
            for spec in Subjects(stack.bus_prefix).streams
        }
    finally:
        await nc.close()


@pytest.mark.timeout(480)
async def test_losing_a_nats_server_and_a_replica_loses_nothing(ha_stack: ChaosStack) -> None:
    stack = ha_stack.stack
    assert isinstance(stack.nats, NatsCluster)
    assert len(stack.nats.urls) == 3
    env = stack.write_local_env().read_text()
    assert f"LANDFALL_NATS_URL={stack.nats.url}" in env  # shlex leaves the comma list unquoted
    for service, variable in (("webhook_gateway", "GATEWAY"), ("orchestrator", "ORCHESTRATOR")):
        assert f"LANDFALL_{variable}_URLS={','.join(stack.urls(service))}" in env
        assert len(stack.urls(service)) == 2
    assert set((await stream_replicas(stack)).values()) == {3}

    outcome = await cluster.run(ha_stack, cluster.QUICK, say=print)
    print(outcome.figures)
    r = outcome.result

    assert r.accepted == cluster.QUICK.webhooks, r.gave_up[:5]
    assert r.lost == [], r.lost[:10]
    assert r.duplicated == {}, r.duplicated
    assert r.extra == [], r.extra[:10]
    assert r.wrong_image == [], r.wrong_image[:5]
    assert r.succeeded + r.superseded == r.accepted
    assert outcome.tally.five_hundreds == 0, outcome.tally.server_errors[:5]
    assert outcome.tally.unavailable_without_retry_after == 0
    assert outcome.unavailable_outside_outages == 0
    assert outcome.tally.unexpected == [], outcome.tally.unexpected[:5]
    assert outcome.driver_failures == []

    killed = [t for o in outcome.outages for t in o.event.targets]
    assert killed == list(cluster.QUICK.kills)
    assert all(o.restored_at is not None for o in outcome.outages)
    # Every replica did part of the work, and together they did all of it.
    assert set(outcome.work) == {f"{s}{suffix}" for s in HTTP_SERVICES for suffix in ("", "-2")}
    assert outcome.idle_replicas == [], outcome.work
    accepted = outcome.work["webhook_gateway"] + outcome.work["webhook_gateway-2"]
    assert accepted <= r.accepted  # a webhook is accepted once, whichever replica answered its retries
    assert outcome.ok
