"""Enrollment: the first start trades the token for an id; later starts need no token."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from nacl.signing import SigningKey
from pydantic import SecretStr

from libs.contracts import signing
from libs.contracts.ids import new_id
from libs.contracts.messages import RolloutReport
from services.data_plane_agent.domain.identity import EnrollmentError
from services.data_plane_agent.settings import Settings
from services.data_plane_agent.usecases.enrollment import load_identity
from tests.integration.data_plane_agent.conftest import OpenHarness

TOKEN = "lfenr_" + "x" * 30


class FakeOrchestrator:
    """The orchestrator's enrollment endpoint (another Landfall service), as the agent sees it."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.dataplane_id = new_id("dp")
        self.signer = SigningKey.generate()  # the orchestrator's command signing key

    async def enroll(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        status = self.answers.pop(0) if self.answers else 201
        if status == 201 and body.get("enrollment_token") == TOKEN:
            return web.json_response(
                {
                    "dataplane_id": self.dataplane_id,
                    "org": "acme",
                    "name": "local",
                    "command_keys": [signing.public_key_b64(self.signer)],
                },
                status=201,
            )
        if status == 201:
            status = 401
        return web.json_response(
            {
                "type": "about:blank",
                "title": "x",
                "status": status,
                "detail": "enrollment token unknown or used",
            },
            status=status,
            content_type="application/problem+json",
        )


@pytest.fixture
async def orchestrator() -> AsyncIterator[tuple[FakeOrchestrator, TestServer]]:
    fake = FakeOrchestrator()
    app = web.Application()
    app.router.add_post("/v1/dataplanes/enroll", fake.enroll)
    server = TestServer(app)
    await server.start_server()
    yield fake, server
    await server.close()


def settings_for(server: TestServer, state_dir: Path, token: str | None) -> Settings:
    return Settings(
        orchestrator_url=str(server.make_url("")),
        enrollment_token=SecretStr(token) if token else None,
        state_dir=state_dir,
        version="9.9.9",
    )


async def test_the_first_start_enrolls_and_later_starts_reuse_the_identity(
    orchestrator: tuple[FakeOrchestrator, TestServer], tmp_path: Path
) -> None:
    fake, server = orchestrator
    identity = await load_identity(settings_for(server, tmp_path / "state", TOKEN))
    assert identity.dataplane_id == fake.dataplane_id
    (sent,) = fake.requests
    assert sent["enrollment_token"] == TOKEN
    assert sent["version"] == "9.9.9"
    assert base64.b64decode(sent["public_key"]) == identity.public_key
    assert "private" not in str(sent)

    state = tmp_path / "state" / "agent.json"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert TOKEN not in state.read_text()
    pinned = [signing.public_key_b64(fake.signer)]
    assert identity.command_keys == tuple(pinned)
    assert json.loads(state.read_text())["command_keys"] == pinned  # pinned for every later start

    again = await load_identity(settings_for(server, tmp_path / "state", None))
    assert again.dataplane_id == identity.dataplane_id
    assert again.public_key == identity.public_key
    assert again.command_keys == tuple(pinned)
    assert len(fake.requests) == 1


async def test_a_refused_token_stops_the_agent_with_the_orchestrator_s_reason(
    orchestrator: tuple[FakeOrchestrator, TestServer], tmp_path: Path
) -> None:
    _, server = orchestrator
    with pytest.raises(EnrollmentError, match="unknown or used"):
        await load_identity(settings_for(server, tmp_path / "state", "lfenr_wrong"))
    assert not (tmp_path / "state" / "agent.json").exists()


async def test_no_state_and_no_token_says_what_to_do(
    orchestrator: tuple[FakeOrchestrator, TestServer], tmp_path: Path
) -> None:
    _, server = orchestrator
    with pytest.raises(EnrollmentError, match="LANDFALL_ENROLLMENT_TOKEN"):
        await load_identity(settings_for(server, tmp_path / "state", None))


async def test_enrollment_waits_for_an_orchestrator_that_is_not_ready_yet(
    orchestrator: tuple[FakeOrchestrator, TestServer], tmp_path: Path
) -> None:
    fake, server = orchestrator
    fake.answers = [503]
    identity = await load_identity(settings_for(server, tmp_path / "state", TOKEN))
    assert identity.dataplane_id == fake.dataplane_id
    assert len(fake.requests) == 2


async def test_an_enrolled_agent_takes_commands_for_its_data_plane(
    open_harness: OpenHarness, orchestrator: tuple[FakeOrchestrator, TestServer]
) -> None:
    fake, server = orchestrator
    async with open_harness(start=False) as h:
        h.settings = h.settings.model_copy(
            update={
                "dataplane_id": None,
                "private_key_file": None,
                "orchestrator_url": str(server.make_url("")),
                "enrollment_token": SecretStr(TOKEN),
                "command_public_keys": "",  # only what the enrollment answered is trusted
            }
        )
        await h.start_agent()
        subject = h.subjects.deploy(fake.dataplane_id)
        # Signed by a key the enrollment did not announce: refused, nothing written.
        stranger = signing.sign(h.command("web", dataplane_id=fake.dataplane_id), SigningKey.generate())
        await h.bus.publish_durable(subject, stranger, msg_id=stranger.deployment_id)
        cmd = signing.sign(h.command("api", dataplane_id=fake.dataplane_id), fake.signer)
        await h.bus.publish_durable(subject, cmd, msg_id=cmd.deployment_id)
        sub = await h.bus.js.subscribe(
            h.subjects.status(fake.dataplane_id), stream=h.subjects.status_stream.name, ordered_consumer=True
        )
        try:
            reports: list[RolloutReport] = []
            while "succeeded" not in [r.status for r in reports]:
                msg = await sub.next_msg(timeout=10)
                reports.append(RolloutReport.model_validate_json(msg.data))
        finally:
            await sub.unsubscribe()
        assert [(r.deployment_id, r.status, r.reason) for r in reports] == [
            (stranger.deployment_id, "failed", "command_rejected"),
            (cmd.deployment_id, "progressing", None),
            (cmd.deployment_id, "succeeded", None),
        ]
        assert h.obj("apps/v1", "deployments", "web") is None
