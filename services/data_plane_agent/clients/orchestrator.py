"""Enrollment: the agent's one call to the orchestrator, over HTTP (`POST /v1/dataplanes/enroll`).

At the first start the agent generates an X25519 key pair and an nkeys user key,
and trades the one-time enrollment token and both PUBLIC halves for its data
plane id. An orchestrator that can mint NATS users answers a user JWT whose
permissions cover only this data plane's subjects; without one the agent
connects as its settings say.

What is subtle: the orchestrator may not be up yet when the agent starts (both
start together in `make up`, or in a cluster rollout), so 5xx, 408, 429 and
connection errors are retried for `enrollment_wait_seconds`; any other 4xx is
final and its problem `detail` is passed on (it holds no secret). The answered
JWT must name the user key we generated: a JWT for another key is refused here
rather than at the first NATS connect. The answer's `command_keys` (the
orchestrator's public signing keys) are pinned: from then on a command must be
signed by one of them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import aiohttp
from nacl.public import PrivateKey
from pydantic import BaseModel

from libs.contracts import signing
from libs.contracts.ids import looks_like
from libs.runtime.errors import DependencyUnavailable
from libs.runtime.natsauth import NatsAuthError, NatsUser, NKey, agent_inbox_prefix, decode_jwt

from ..domain.identity import EnrollmentError, Identity
from ..settings import Settings

log = logging.getLogger(__name__)


class OrchestratorUnavailable(DependencyUnavailable):
    pass


class EnrollRequest(BaseModel):
    enrollment_token: str
    public_key: str
    version: str
    nats_user_public_key: str | None = None


class EnrollReply(BaseModel):
    dataplane_id: str
    org: str | None = None
    name: str | None = None
    nats_jwt: str | None = None
    nats_inbox_prefix: str | None = None
    command_keys: list[str] = []


async def enroll(settings: Settings, *, session: aiohttp.ClientSession | None = None) -> Identity:
    """Trade the enrollment token for a data plane id, retrying while the orchestrator is down."""
    if settings.enrollment_token is None or not settings.enrollment_token.get_secret_value():
        raise EnrollmentError(
            f"no agent state in {settings.state_dir} and no LANDFALL_ENROLLMENT_TOKEN: create a data plane "
            "(POST /v1/orgs/{org}/dataplanes) and start the agent with its enrollment token"
        )
    key = PrivateKey.generate()
    nats_key = NKey.generate("user")
    body = EnrollRequest(
        enrollment_token=settings.enrollment_token.get_secret_value(),
        public_key=base64.b64encode(bytes(key.public_key)).decode(),
        version=settings.version,
        nats_user_public_key=nats_key.public_key,
    )
    url = settings.orchestrator_url.rstrip("/") + "/v1/dataplanes/enroll"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.enrollment_wait_seconds
    own = session is None
    http = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    try:
        while True:
            try:
                async with http.post(url, json=body.model_dump()) as resp:
                    text = await resp.text()
                    if resp.status in (200, 201):
                        reply = EnrollReply.model_validate_json(text)
                        break
                    if resp.status < 500 and resp.status not in (408, 429):
                        raise EnrollmentError(
                            f"the orchestrator refused the enrollment ({resp.status}): {_detail(text)}"
                        )
                    problem: str = f"answered {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = repr(exc)
            if loop.time() > deadline:
                raise OrchestratorUnavailable(f"cannot enroll at {url}: {problem}")
            log.warning("enrollment: orchestrator not answering; retrying", extra={"error": problem})
            await asyncio.sleep(1)
    finally:
        if own:
            await http.close()
    if not looks_like("dp", reply.dataplane_id):
        raise EnrollmentError(
            f"the orchestrator answered an invalid data plane id {reply.dataplane_id[:40]!r}"
        )
    nats = _nats_user(reply, nats_key) if reply.nats_jwt else None
    return Identity(reply.dataplane_id, key, reply.org, reply.name, nats, command_keys=_command_keys(reply))


def _command_keys(reply: EnrollReply) -> tuple[str, ...]:
    """The orchestrator's public signing keys, to pin: every one must be an Ed25519 key."""
    for public in reply.command_keys:
        try:
            signing.parse_public_key(public)
        except signing.InvalidKey as exc:
            raise EnrollmentError(f"the orchestrator answered an unusable command key: {exc}") from None
    if not reply.command_keys:
        log.warning("the orchestrator announced no command key: this agent will refuse every command")
    return tuple(dict.fromkeys(reply.command_keys))


def _nats_user(reply: EnrollReply, key: NKey) -> NatsUser:
    assert reply.nats_jwt is not None
    try:
        subject = decode_jwt(reply.nats_jwt).get("sub")
    except NatsAuthError as exc:
        raise EnrollmentError(f"the orchestrator answered an unusable NATS JWT: {exc}") from None
    if subject != key.public_key:
        raise EnrollmentError("the orchestrator answered a NATS JWT for another user key")
    inbox_prefix = reply.nats_inbox_prefix or agent_inbox_prefix(reply.dataplane_id)
    return NatsUser(reply.nats_jwt, key.seed, inbox_prefix)


def _detail(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(doc, dict):
        return str(doc.get("detail") or doc.get("title") or "")[:200]
    return text[:200]
