"""Accepted means stored: NATS goes away, the gateway says 503, nothing accepted is lost.

A stack of its own, because this module stops and restarts nats-server.
"""

from __future__ import annotations

import json
from typing import Any

from libs.devstack.stack import Stack, http
from tests.e2e.test_ci_webhook import Component
from tests.support import wait_until


def test_nats_down_means_503_and_nothing_accepted_is_lost(stack: Stack) -> None:
    comp = Component(stack)
    for tag in ("1", "2", "3", "4"):
        comp.push(tag)

    accepted = []
    for tag in ("1", "2"):
        status, body, _ = comp.deploy({"tag": tag})
        assert status == 202, body
        accepted.append(body["deployment_id"])

    stack.nats.kill()  # a crash, not a clean stop
    try:
        status, problem, headers = comp.deploy({"tag": "3"})
        assert status == 503, problem
        assert int(headers["Retry-After"]) >= 1
        assert problem["type"].endswith("dependency-unavailable")
    finally:
        stack.nats.start()

    # CI retries after Retry-After; the gateway reconnects by itself.
    def retried() -> dict[str, Any] | None:
        status, body, _ = comp.deploy({"tag": "4"}, headers={"Idempotency-Key": "after-outage"})
        assert status in (202, 503), body
        return body if status == 202 else None

    body = wait_until(retried, timeout=60, what="the retried deploy accepted after NATS returned")
    accepted.append(body["deployment_id"])

    finals = {dep_id: comp.wait(dep_id, wait=60)[1] for dep_id in accepted}
    statuses = {dep_id: view["status"] for dep_id, view in finals.items()}
    # Every accepted deploy reached a final state; the newest one runs.
    assert set(statuses.values()) <= {"succeeded", "superseded"}, json.dumps(finals, default=str)
    assert statuses[accepted[-1]] == "succeeded"
    history = stack.api(
        "orchestrator", "GET", f"/v1/orgs/default/projects/default/components/{comp.name}/deployments"
    )
    assert sorted(d["id"] for d in history["items"]) == sorted(
        accepted
    )  # none lost, none extra (the 503 made none)


def test_a_restarted_orchestrator_loses_no_accepted_deployment(stack: Stack) -> None:
    comp = Component(stack)
    comp.push("1")
    comp.push("2")
    status, body, _ = comp.deploy({"tag": "1"})  # CI has used this component before
    assert comp.wait(body["deployment_id"])[1]["status"] == "succeeded"
    stack.stop_service("orchestrator")
    try:
        status, body, _ = comp.deploy({"tag": "2"})
        assert status == 202, body  # the gateway only needs NATS and its own database
    finally:
        stack.start_service("orchestrator")
    assert comp.wait(body["deployment_id"], wait=60)[1]["status"] == "succeeded"
    status, view = http(
        "GET", f"{stack.url('orchestrator')}/v1/deployments/{body['deployment_id']}", token=stack.org_key
    )
    assert status == 200
    assert view["component"] == comp.name
