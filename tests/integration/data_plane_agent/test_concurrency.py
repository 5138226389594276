"""Components are applied side by side: one held command does not hold the data plane.

An API server that answers 429 (too many requests: API priority and fairness) to the writes of
one image (the sandbox's admission rule) keeps that component's deploy held (the agent retries
an unavailable API, it does not fail it); meanwhile another component's deploy is applied and
reported, and so is the held component's next command, after its first and in that order, once
the API server takes writes again.
"""

from __future__ import annotations

from tests.integration.data_plane_agent.conftest import OpenHarness
from tests.integration.data_plane_agent.test_failure_reasons import sandbox
from tests.integration.data_plane_agent.test_outages import per_component


async def test_a_held_component_does_not_hold_the_others(open_harness: OpenHarness) -> None:
    async with open_harness() as h:
        rule = {"image_contains": "/stuck:", "status": 429, "message": "too many requests"}
        assert (await sandbox(h, "POST", "/_sandbox/admission-rules", rule))[0] == 201

        stuck = h.command("api", seq=1, image="registry.example.com/acme/stuck:1")
        await h.send(stuck)
        after_stuck = h.command("api", seq=3, image="registry.example.com/acme/api:3")
        other = h.command("web", seq=2)
        await h.send(other)
        await h.send(after_stuck)

        # The other component goes through while the first is still held.
        assert (await h.wait_report(other.deployment_id)).status == "succeeded"
        assert h.reports_for(stuck.deployment_id) == []
        assert h.reports_for(after_stuck.deployment_id) == []  # waits behind its component's first

        assert (await sandbox(h, "DELETE", "/_sandbox/admission-rules"))[0] == 200
        assert (await h.wait_report(after_stuck.deployment_id, timeout=30)).status == "succeeded"
        statuses = [r.status for r in h.reports_for(stuck.deployment_id)]
        assert statuses, "the held deploy is reported once the API server takes writes"
        assert statuses[0] == "progressing"  # applied, then superseded by seq 3
        assert per_component(h)["api"] == [stuck.deployment_id, after_stuck.deployment_id]
        assert h.image_of("api").endswith("api:3")
