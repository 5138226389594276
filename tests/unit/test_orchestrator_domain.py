"""The orchestrator's pure rules: state machines, component validation, images, pipeline order."""

from __future__ import annotations

import base64
import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from libs.runtime.errors import DomainError, ProblemError
from services.orchestrator.domain.records import DataPlane, Environment, pinned_image
from services.orchestrator.domain.rules import (
    check_component_spec,
    check_image_host,
    check_public_key,
    deployment_may_move,
    execution_may_move,
    execution_status_for,
    manual_image,
    next_environment,
    retry_delay,
    token_sha256,
    valid_schedule,
    valid_timezone,
)
from tests.records import COMPONENT, DEPLOYMENT, T0

DIGEST = "sha256:" + "a" * 64


def _fields(exc: pytest.ExceptionInfo[DomainError]) -> list[str]:
    """The fields the RFC 9457 problem the HTTP middleware renders for this error names."""
    return [e["field"] for e in ProblemError.from_domain(exc.value).errors]


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("pending", "dispatched", True),
        ("pending", "progressing", True),  # the dispatched mark was lost, the agent got the command
        ("dispatched", "progressing", True),
        ("dispatched", "succeeded", True),
        ("progressing", "failed", True),
        ("progressing", "superseded", True),
        ("progressing", "progressing", False),
        ("progressing", "dispatched", False),
        ("succeeded", "failed", False),
        ("failed", "succeeded", False),
        ("superseded", "succeeded", False),
        ("superseded", "progressing", False),
    ],
)
def test_deployments_only_move_forward_and_terminal_is_final(current: str, new: str, allowed: bool) -> None:
    assert deployment_may_move(current, new) is allowed


def test_executions_follow_the_same_rule() -> None:
    assert execution_may_move("dispatched", "running")
    assert execution_may_move("running", "succeeded")
    assert not execution_may_move("succeeded", "failed")
    assert not execution_may_move("running", "dispatched")
    assert execution_status_for("progressing") == ("running", None)
    assert execution_status_for("superseded") == ("failed", "superseded")
    assert execution_status_for("succeeded") == ("succeeded", None)


def _spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "service",
        "image": "ghcr.io/acme/api:1.0",
        "port": None,
        "schedule": None,
        "timezone": None,
        "env": {},
    }
    return {**base, **changes}


def test_a_service_defaults_to_port_8080_and_normalises_its_image() -> None:
    spec = check_component_spec(**_spec(image="GHCR.io/acme/api:1.0"))
    assert spec.port == 8080
    assert str(spec.image) == "ghcr.io/acme/api:1.0"


def test_a_scheduled_task_needs_schedule_and_timezone() -> None:
    spec = check_component_spec(
        **_spec(type="scheduled-task", schedule="*/15  * * * 1-5", timezone="America/New_York")
    )
    assert spec.schedule == "*/15 * * * 1-5"
    assert spec.port is None
    with pytest.raises(DomainError) as exc:
        check_component_spec(**_spec(type="scheduled-task"))
    assert exc.value.status == 422
    assert _fields(exc) == ["schedule", "timezone"]


def test_every_wrong_field_is_reported_at_once() -> None:
    with pytest.raises(DomainError) as exc:
        check_component_spec(
            **_spec(image="", port=0, schedule="* * * * *", timezone="UTC", env={"OK_1": "", "no-dash": ""})
        )
    assert _fields(exc) == ["image", "port", "schedule", "timezone", "env.no-dash"]


@pytest.mark.parametrize(
    ("expression", "valid"),
    [
        ("0 3 * * *", True),
        ("*/5 * * * MON-FRI", True),
        ("0 0 1 1 *", True),
        ("* * * * * *", False),  # seconds
        ("@hourly", False),
        ("0 * * *", False),
        ("61 * * * *", False),
        ("CRON_TZ=UTC 0 * * * *", False),
    ],
)
def test_schedules_are_five_field_cron(expression: str, valid: bool) -> None:
    assert valid_schedule(expression) is valid


def test_timezones_are_iana_names() -> None:
    assert valid_timezone("Europe/Paris")
    assert valid_timezone("UTC")
    assert not valid_timezone("Europe/Atlantis")
    assert not valid_timezone("../../etc/passwd")
    assert not valid_timezone("")


def test_the_image_host_must_be_the_registry_host() -> None:
    spec = check_component_spec(**_spec(image="nginx:1.27"))
    check_image_host(spec.image, "registry-1.docker.io")  # Docker Hub aliases are one host
    with pytest.raises(DomainError) as exc:
        check_image_host(spec.image, "ghcr.io")
    assert _fields(exc) == ["image"]


def test_manual_images_stay_on_the_component_repository() -> None:
    component = COMPONENT
    assert str(manual_image(component, image=None, tag=None)) == "ghcr.io/acme/api:1.0"
    assert str(manual_image(component, image=None, tag="2.0")) == "ghcr.io/acme/api:2.0"
    pinned = manual_image(component, image=f"ghcr.io/acme/api@{DIGEST}", tag=None)
    assert pinned.digest == DIGEST
    with pytest.raises(DomainError) as forbidden:
        manual_image(component, image="ghcr.io/evil/api:1.0", tag=None)
    assert forbidden.value.status == 403
    with pytest.raises(DomainError) as both:
        manual_image(component, image="ghcr.io/acme/api:1.0", tag="1.0")
    assert both.value.status == 422
    with pytest.raises(DomainError) as bad_tag:
        manual_image(component, image=None, tag="-nope")
    assert _fields(bad_tag) == ["tag"]


def test_a_pinned_image_drops_the_tag_for_the_digest() -> None:
    assert pinned_image("ghcr.io/acme/api:1.0", DIGEST) == f"ghcr.io/acme/api@{DIGEST}"
    assert pinned_image("ghcr.io/acme/api:1.0", None) == "ghcr.io/acme/api:1.0"


def test_the_view_exposes_the_timings_known_so_far() -> None:
    deployment = dataclasses.replace(
        DEPLOYMENT,
        digest=DIGEST,
        status="dispatched",
        recorded_at=T0 + timedelta(milliseconds=5),
        dispatched_at=T0 + timedelta(milliseconds=9),
        updated_at=T0 + timedelta(milliseconds=9),
    )
    view = deployment.view()
    assert set(view.timings) == {"accepted", "recorded", "dispatched"}
    assert view.created_at == deployment.recorded_at
    assert deployment.pinned_image == f"ghcr.io/acme/api@{DIGEST}"


def test_the_next_environment_follows_pipeline_order() -> None:
    envs = [
        Environment(f"env_{n}", "acme", n, "dp_x", i, T0) for i, n in enumerate(["dev", "staging", "prod"])
    ]
    assert next_environment(envs, "dev") == envs[1]
    assert next_environment(envs, "staging") == envs[2]
    assert next_environment(envs, "prod") is None


def test_an_agent_is_connected_within_the_freshness_window() -> None:
    plane = DataPlane("dp_x", "acme", "eu", None, None, None, "1.0", T0, T0)
    fresh = timedelta(seconds=15)
    assert plane.connected(T0 + timedelta(seconds=15), fresh)
    assert not plane.connected(T0 + timedelta(seconds=16), fresh)


def test_public_keys_are_32_byte_base64() -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    assert check_public_key(key) == key
    with pytest.raises(DomainError):
        check_public_key(base64.b64encode(b"short").decode())
    with pytest.raises(DomainError):
        check_public_key("not base64!")
    assert token_sha256("a") != token_sha256("b")
    assert len(token_sha256("a")) == 64


def test_retries_back_off_up_to_a_cap() -> None:
    assert retry_delay(0, base=2, cap=60) == 2
    assert retry_delay(3, base=2, cap=60) == 16
    assert retry_delay(50, base=2, cap=60) == 60
