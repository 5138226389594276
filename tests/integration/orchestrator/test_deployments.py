"""Deployments end to end inside the orchestrator: intake, dispatch, reports, promotion, runs.

Real NATS (JetStream) and PostgreSQL; the credentials service, the gateway and
the agent are played by the test on their NATS subjects.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta

from libs.contracts.ids import new_id
from libs.contracts.messages import RemoveCommand, ResolvedImage
from libs.contracts.naming import namespace_for
from tests.integration.orchestrator.helpers import (
    DIGEST_1_0,
    DIGEST_1_1,
    IMAGE_1_0,
    IMAGE_1_1,
    PINNED_1_0,
    PINNED_1_1,
    REGISTRY_HOST,
    REPOSITORY,
    SEALED_CIPHERTEXT,
    Harness,
    now,
)
from tests.support import eventually


async def test_pushed_image_is_dispatched_pinned_by_digest_with_the_sealed_secret(orch: Harness) -> None:
    world = await orch.provision()
    deployment_id = await orch.push(world, IMAGE_1_0)

    command = await orch.command_for(deployment_id)
    assert command.image == PINNED_1_0
    assert command.dataplane_id == world.dataplane_id
    assert command.environment == "development"
    assert command.namespace == namespace_for("acme", "shop", "development")
    assert command.component_type == "service"
    assert command.port == 8080
    assert command.pull_secret is not None
    assert command.pull_secret.ciphertext == SEALED_CIPHERTEXT
    # The secret was sealed for the key this data plane enrolled with.
    assert orch.credentials.pull_requests[-1].recipient_public_key == world.public_key
    subject = next(s for s, c in orch.commands if c.deployment_id == deployment_id)
    assert subject == orch.subjects.deploy(world.dataplane_id)

    view = await orch.wait_status(deployment_id, "dispatched")
    assert view["digest"] == DIGEST_1_0
    assert view["image"] == IMAGE_1_0
    assert view["source"] == "webhook"
    assert {"accepted", "recorded", "dispatched"} <= set(view["timings"])
    assert view["timings"]["accepted"] <= view["timings"]["recorded"] <= view["timings"]["dispatched"]


async def test_a_redelivered_event_creates_no_second_deployment(orch: Harness) -> None:
    world = await orch.provision()
    first = await orch.push(world, IMAGE_1_0)
    await orch.wait_status(first, "dispatched")
    # The same event again (a gateway retry that got past JetStream's de-duplication window).
    await orch.push(world, IMAGE_1_0, deployment_id=first, msg_id=first + "-again")
    # The intake handles events in order: once the next one is in, the repeat has been seen.
    marker = await orch.push(world, IMAGE_1_1)
    await orch.wait_status(marker, "dispatched")

    history = await orch.ok("GET", world.component_path + "/deployments")
    assert [d["id"] for d in history["items"]] == [marker, first]
    assert len([c for _, c in orch.commands if c.deployment_id == first]) == 1


async def test_an_unknown_tag_fails_at_once_with_image_not_found(orch: Harness) -> None:
    world = await orch.provision()
    deployment_id = await orch.push(world, f"{REGISTRY_HOST}/{REPOSITORY}:does-not-exist")
    view = await orch.wait_status(deployment_id, "failed", "dispatched")
    assert view["status"] == "failed"
    assert view["reason"] == "image_not_found"
    assert "finished" in view["timings"]
    assert not [c for _, c in orch.commands if c.deployment_id == deployment_id]


async def test_a_succeeded_report_finishes_the_deployment_and_is_announced(orch: Harness) -> None:
    world = await orch.provision()
    deployment_id = await orch.roll_out(world, IMAGE_1_0)
    await orch.report(world, deployment_id, "succeeded")
    view = await orch.wait_status(deployment_id, "succeeded")
    assert {"applied", "reported", "finished"} <= set(view["timings"])

    async def announced() -> bool:
        return any(
            c.deployment.id == deployment_id and c.deployment.status == "succeeded" for c in orch.changes
        )

    await eventually(announced, what="DeploymentChanged(succeeded)")

    component = await orch.ok("GET", world.component_path)
    assert component["environments"] == {
        "development": {
            "image": IMAGE_1_0,
            "digest": DIGEST_1_0,
            "deployment_id": deployment_id,
            "status": "succeeded",
        }
    }
    # A repeated or late report never moves a terminal deployment.
    await orch.report(world, deployment_id, "failed", reason="CrashLoopBackOff")
    await orch.roll_out(world, IMAGE_1_1)  # handled after the late report: that one was seen
    assert (await orch.deployment(deployment_id))["status"] == "succeeded"


async def test_a_newer_deployment_supersedes_an_older_one_still_in_flight(orch: Harness) -> None:
    world = await orch.provision()
    older = await orch.roll_out(world, IMAGE_1_0)

    newer = await orch.push(world, IMAGE_1_1)
    superseded = await orch.wait_status(older, "superseded")
    assert superseded["reason"] == "superseded"
    newer_command = await orch.command_for(newer)
    older_command = await orch.command_for(older)
    assert newer_command.seq > older_command.seq

    # The older rollout reports late: it changes neither itself nor the newer deployment.
    await orch.report(world, older, "succeeded")
    await orch.report(world, newer, "succeeded")
    await orch.wait_status(newer, "succeeded")
    assert (await orch.deployment(older))["status"] == "superseded"
    component = await orch.ok("GET", world.component_path)
    assert component["environments"]["development"]["deployment_id"] == newer


async def test_an_event_accepted_earlier_but_arriving_later_never_replaces_the_newer_image(
    orch: Harness,
) -> None:
    # The gateway accepted 1.0 first and 1.1 a second later, but 1.0's first delivery met an
    # outage and came back after 1.1 was recorded. 1.1 must stay; 1.0 is superseded, never sent.
    world = await orch.provision()
    accepted_first = now() - timedelta(seconds=10)
    newer = await orch.push(world, IMAGE_1_1, accepted_at=accepted_first + timedelta(seconds=1))
    await orch.wait_status(newer, "dispatched")
    older = await orch.push(world, IMAGE_1_0, accepted_at=accepted_first)

    view = await orch.wait_status(older, "superseded")
    assert view["reason"] == "superseded"
    assert any(newer in note for note in view["notes"])
    assert (await orch.deployment(newer))["status"] == "dispatched"
    marker = await orch.push(world, IMAGE_1_1)  # the intake is past `older` once this is in
    await orch.wait_status(marker, "dispatched")
    assert not [c for _, c in orch.commands if c.deployment_id == older]


async def test_deleting_a_component_sends_its_data_planes_a_removal_after_its_deployments(
    orch: Harness,
) -> None:
    world = await orch.provision()
    first = await orch.push(world, IMAGE_1_0)
    await orch.wait_status(first, "dispatched")
    await orch.report(world, first, "succeeded")
    await orch.wait_status(first, "succeeded")
    second = await orch.push(world, IMAGE_1_1)
    await orch.wait_status(second, "dispatched")
    last_seq = (await orch.command_for(second)).seq

    status, _, _ = await orch.call("DELETE", world.component_path)
    assert status == 204

    async def removal() -> list[tuple[str, RemoveCommand]]:
        return [(s, r) for s, r in orch.removals if r.component == world.component]

    ((subject, command),) = await eventually(removal, what="a RemoveCommand")
    assert subject == orch.subjects.deploy(world.dataplane_id)  # in order with the deploy commands
    assert command.dataplane_id == world.dataplane_id
    assert (command.org, command.project, command.environment) == (world.org, world.project, "development")
    assert command.namespace == namespace_for(world.org, world.project, "development")
    assert command.seq > last_seq
    status, _, _ = await orch.call("GET", world.component_path)
    assert status == 404
    status, _, _ = await orch.call("GET", f"/v1/deployments/{second}")
    assert status == 404

    # Sent once: a later sweep does not send it again. The marker is a deployment only the sweeper
    # can dispatch (its data plane enrolls after the event was handled), so once it is out, a sweep
    # has run since the removal was sent.
    marker = await orch.provision(org="marker", enroll=False)
    waiting = await orch.push(marker, IMAGE_1_0)
    await eventually(lambda: _reason(orch, waiting, "dataplane_not_enrolled"), what="the marker deferred")
    await orch.ok(
        "POST",
        "/v1/dataplanes/enroll",
        {"enrollment_token": marker.enrollment_token, "public_key": marker.public_key, "version": "1.0"},
    )
    await orch.command_for(waiting)
    assert len(await removal()) == 1

    # Deleting what does not exist changes nothing.
    status, _, _ = await orch.call("DELETE", marker.component_path.replace(marker.component, "missing"))
    assert status == 404


async def test_promotion_deploys_the_same_digest_to_the_next_environment_only(orch: Harness) -> None:
    world = await orch.provision()
    promotions = world.component_path + "/promotions"

    status, problem, _ = await orch.call("POST", promotions, {"from": "development", "to": "staging"})
    assert status == 409, problem  # nothing runs in development yet

    deployment_id = await orch.push(world, IMAGE_1_0)
    await orch.wait_status(deployment_id, "dispatched")
    await orch.report(world, deployment_id, "succeeded")
    await orch.wait_status(deployment_id, "succeeded")

    status, problem, _ = await orch.call("POST", promotions, {"from": "development", "to": "production"})
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "to"

    promoted = await orch.ok("POST", promotions, {"from": "development", "to": "staging"}, 202)
    assert promoted["environment"] == "staging"
    assert promoted["source"] == "promotion"
    assert promoted["digest"] == DIGEST_1_0
    command = await orch.command_for(promoted["id"])
    assert command.image == PINNED_1_0
    assert command.namespace == namespace_for("acme", "shop", "staging")
    # Pinned already: the registry was not asked again for the promotion.
    assert len(orch.credentials.resolve_requests) == 1


async def test_manual_deployments_by_tag_by_image_and_rollback(orch: Harness) -> None:
    world = await orch.provision()
    deployments = world.component_path + "/deployments"

    by_tag = await orch.ok("POST", deployments, {"tag": "1.1"}, 202)
    assert by_tag["image"] == IMAGE_1_1
    assert by_tag["environment"] == "development"
    assert by_tag["source"] == "manual"
    await orch.wait_status(by_tag["id"], "dispatched")
    await orch.report(world, by_tag["id"], "succeeded")
    await orch.wait_status(by_tag["id"], "succeeded")

    status, problem, _ = await orch.call("POST", deployments, {"image": "ghcr.io/someone/else:1.0"})
    assert status == 403, problem
    status, problem, _ = await orch.call("POST", deployments, {"image": IMAGE_1_0, "tag": "1.0"})
    assert status == 422, problem
    status, problem, _ = await orch.call("POST", deployments, {"environment": "nowhere"})
    assert status == 422, problem
    assert problem["errors"][0]["field"] == "environment"

    newer = await orch.ok("POST", deployments, {"tag": "1.0"}, 202)
    await orch.wait_status(newer["id"], "dispatched")
    await orch.report(world, newer["id"], "succeeded")
    await orch.wait_status(newer["id"], "succeeded")

    # Going back to an image that ran before is a rollback, pinned by its digest.
    back = await orch.ok(
        "POST",
        deployments,
        {"image": PINNED_1_1, "environment": "development"},
        202,
    )
    assert back["source"] == "rollback"
    command = await orch.command_for(back["id"])
    assert command.image == PINNED_1_1

    history = await orch.ok("GET", deployments + "?environment=development")
    assert [d["id"] for d in history["items"]] == [back["id"], newer["id"], by_tag["id"]]
    assert (await orch.ok("GET", deployments + "?environment=staging"))["items"] == []


async def test_executions_run_the_deployed_image_of_manual_tasks_only(orch: Harness) -> None:
    world = await orch.provision(component="migrate", component_type="manual-task")
    executions = world.component_path + "/executions"

    status, problem, _ = await orch.call("POST", executions, {"args": ["up"]})
    assert status == 409, problem  # not deployed yet

    deployment_id = await orch.push(world, IMAGE_1_0)
    await orch.wait_status(deployment_id, "dispatched")
    await orch.report(world, deployment_id, "succeeded")
    await orch.wait_status(deployment_id, "succeeded")

    execution = await orch.ok("POST", executions, {"args": ["db", "upgrade"]}, 202)
    assert execution["id"].startswith("exe_")
    assert execution["deployment_id"] == deployment_id
    assert execution["environment"] == "development"
    assert execution["args"] == ["db", "upgrade"]
    command = await orch.command_for(deployment_id, kind="run")
    assert command.execution_id == execution["id"]
    assert command.args == ["db", "upgrade"]
    assert command.image == PINNED_1_0
    assert command.pull_secret is not None

    await orch.report(world, deployment_id, "succeeded", kind="run", execution_id=execution["id"])

    async def finished() -> dict[str, object] | None:
        items = (await orch.ok("GET", executions))["items"]
        return items[0] if items and items[0]["status"] == "succeeded" else None

    assert (await eventually(finished, what="execution succeeded"))["id"] == execution["id"]
    # The run report did not touch the deployment.
    assert (await orch.deployment(deployment_id))["status"] == "succeeded"

    await orch.ok("POST", "/v1/orgs/acme/projects/shop/components", _service_body(world.registry_id), 201)
    status, problem, _ = await orch.call(
        "POST", "/v1/orgs/acme/projects/shop/components/web/executions", {"args": []}
    )
    assert status == 409, problem


def _service_body(registry_id: str) -> dict[str, object]:
    return {"name": "web", "type": "service", "registry_id": registry_id, "image": IMAGE_1_0}


async def test_vendor_registry_deploys_by_tag_with_a_note(orch: Harness) -> None:
    world = await orch.provision(auth_type="vendor")
    deployment_id = await orch.push(world, IMAGE_1_0)
    command = await orch.command_for(deployment_id)
    assert command.image == IMAGE_1_0
    view = await orch.wait_status(deployment_id, "dispatched")
    assert view["digest"] is None
    assert view["notes"] == ["tag not pinned: vendor registry"]


async def test_without_the_credentials_service_a_deployment_waits_and_is_dispatched_later(
    orch: Harness,
) -> None:
    world = await orch.provision()
    await orch.credentials.stop()

    deployment_id = await orch.push(world, IMAGE_1_0)
    pending = await orch.wait_status(deployment_id, "pending")
    await eventually(
        lambda: _reason(orch, deployment_id, "credentials_unavailable"), what="the deferral to be recorded"
    )
    assert pending["status"] == "pending"
    assert not [c for _, c in orch.commands if c.deployment_id == deployment_id]

    await orch.credentials.start()
    command = await orch.command_for(deployment_id)
    assert command.image.endswith(DIGEST_1_0)
    view = await orch.wait_status(deployment_id, "dispatched")
    assert view["reason"] is None


async def _reason(orch: Harness, deployment_id: str, reason: str) -> bool:
    status, view, _ = await orch.call("GET", f"/v1/deployments/{deployment_id}")
    return status == 200 and view["reason"] == reason


async def test_an_event_for_an_unknown_component_records_nothing(orch: Harness) -> None:
    world = await orch.provision()
    ghost = new_id("dep")
    world_of_ghosts = type(world)(**{**world.__dict__, "component": "ghost"})
    await orch.push(world_of_ghosts, IMAGE_1_0, deployment_id=ghost)
    marker = await orch.push(world, IMAGE_1_0)
    await orch.wait_status(marker, "dispatched")
    status, _, _ = await orch.call("GET", f"/v1/deployments/{ghost}")
    assert status == 404


async def test_a_data_plane_not_enrolled_yet_gets_its_deployment_once_it_enrolls(orch: Harness) -> None:
    world = await orch.provision(enroll=False)
    deployment_id = await orch.push(world, IMAGE_1_0)
    await eventually(
        lambda: _reason(orch, deployment_id, "dataplane_not_enrolled"), what="the deferral to be recorded"
    )
    assert (await orch.deployment(deployment_id))["status"] == "pending"

    await orch.ok(
        "POST",
        "/v1/dataplanes/enroll",
        {"enrollment_token": world.enrollment_token, "public_key": world.public_key, "version": "1.0"},
    )
    command = await orch.command_for(deployment_id)
    assert command.pull_secret is not None
    assert orch.credentials.pull_requests[-1].recipient_public_key == world.public_key


async def test_after_re_enrolling_with_a_new_key_the_next_pull_secret_is_sealed_to_it(orch: Harness) -> None:
    world = await orch.provision()
    before = await orch.push(world, IMAGE_1_0)
    assert (await orch.command_for(before)).pull_secret is not None
    assert orch.credentials.pull_requests[-1].recipient_public_key == world.public_key

    # The cluster was rebuilt: a new agent, a new key, a new one-time token.
    plane = f"/v1/orgs/{world.org}/dataplanes/{world.dataplane_id}"
    fresh = await orch.ok("POST", f"{plane}/enrollment-token", None, 201)
    new_key = base64.b64encode(os.urandom(32)).decode()
    assert new_key != world.public_key
    await orch.ok(
        "POST",
        "/v1/dataplanes/enroll",
        {"enrollment_token": fresh["enrollment_token"], "public_key": new_key, "version": "2.0"},
    )
    after = await orch.push(world, IMAGE_1_0)
    command = await orch.command_for(after)
    assert orch.credentials.pull_requests[-1].recipient_public_key == new_key
    assert command.pull_secret is not None
    assert command.pull_secret.recipient_key_id == hashlib.sha256(base64.b64decode(new_key)).hexdigest()[:16]


async def test_an_org_without_environments_fails_the_pushed_deployment_visibly(orch: Harness) -> None:
    world = await orch.provision(environments=())
    deployment_id = await orch.push(world, IMAGE_1_0)
    view = await orch.wait_status(deployment_id, "failed")
    assert view["reason"] == "no_environment"
    assert not [c for _, c in orch.commands if c.deployment_id == deployment_id]


async def test_registry_refusal_fails_and_an_unreachable_registry_is_retried(orch: Harness) -> None:
    world = await orch.provision()
    orch.credentials.tags[(REPOSITORY, "locked")] = ResolvedImage(status="unauthorized", detail="401")
    orch.credentials.tags[(REPOSITORY, "flaky")] = ResolvedImage(status="unreachable", detail="timeout")

    refused = await orch.push(world, f"{REGISTRY_HOST}/{REPOSITORY}:locked")
    view = await orch.wait_status(refused, "failed")
    assert view["reason"] == "registry_unauthorized"

    waiting = await orch.push(world, f"{REGISTRY_HOST}/{REPOSITORY}:flaky")
    await eventually(lambda: _reason(orch, waiting, "registry_unreachable"), what="the retry to be scheduled")
    assert (await orch.deployment(waiting))["status"] == "pending"
    orch.credentials.add_tag("flaky", DIGEST_1_1)
    command = await orch.command_for(waiting)
    assert command.image == PINNED_1_1
