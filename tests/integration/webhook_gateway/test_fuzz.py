"""Property: whatever CI (or an attacker) sends to the webhook, the gateway never answers 5xx.

Hypothesis generates bodies, content types and headers (tokens, Idempotency-Key,
Standard Webhooks headers) and posts them through aiohttp's TestClient to a real
gateway on real NATS, PostgreSQL and OpenBao. Hypothesis drives its examples
synchronously, so the gateway runs on an event loop of its own in a worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.webhook_gateway.domain.tokens import generate_token
from services.webhook_gateway.settings import Settings
from tests.integration.webhook_gateway.helpers import component_info, create_token, fuzzing_settings, running

EXAMPLES = 1000

header_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=300
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
reference_text = st.one_of(
    tags,
    tags.map(lambda t: "ghcr.io/acme/api:" + t),
    tags.map(lambda t: "GHCR.io/acme/api:" + t),
    tags.map(lambda t: "docker.io/acme/api:" + t),
    st.from_regex(r"[A-Za-z0-9./:@_+\-\[\]]{0,120}", fullmatch=True),
    st.builds(lambda s: "ghcr.io/acme/api" + s, st.from_regex(r"[A-Za-z0-9./:@_\-]{0,80}", fullmatch=True)),
    st.builds(lambda h: "ghcr.io/acme/api@sha256:" + h, st.from_regex(r"[0-9a-fA-F]{0,70}", fullmatch=True)),
    st.text(max_size=200),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
deploy_bodies = st.dictionaries(
    st.sampled_from(["image", "tag", "digest", "imgae", ""]),
    st.one_of(reference_text, json_values),
    max_size=3,
).map(lambda d: json.dumps(d).encode())
single_field = st.builds(
    lambda key, value: json.dumps({key: value}).encode(),
    st.sampled_from(["image", "tag", "digest"]),
    reference_text,
)
bodies = st.one_of(
    tags.map(lambda t: json.dumps({"tag": t}).encode()),
    single_field,
    single_field,
    deploy_bodies,
    deploy_bodies,
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=2000),
    st.text(max_size=500).map(str.encode),
)
content_types = st.one_of(
    st.just("application/json"),
    st.just("application/json"),
    st.just("application/json"),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
        ]
    ),
    header_text,
)


def _fuzz(settings_: Settings) -> dict[int, int]:
    """Runs in a worker thread with its own event loop; returns how many answers had each status."""
    loop = asyncio.new_event_loop()
    statuses: dict[int, int] = {}
    try:
        env_cm = running(settings_)  # a gateway, a fake orchestrator, a CI token for `api`
        env = loop.run_until_complete(env_cm.__aenter__())
        client = env.client
        try:
            env.orch.add(component_info("signed"))
            plain = env.token
            signed = loop.run_until_complete(create_token(client, settings_, "signed"))["token"]
            secret = loop.run_until_complete(env.new_secret("signed"))
            tokens = st.one_of(
                st.just(plain),
                st.just(plain),
                st.just(plain),
                st.just(signed),
                st.just(signed),
                st.just(generate_token()),
                header_text,
                st.none(),
            )
            simple = st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True)
            optional_header = st.one_of(st.none(), st.none(), simple, header_text)

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(
                body=bodies,
                content_type=content_types,
                token=tokens,
                idempotency_key=optional_header,
                webhook_id=optional_header,
                webhook_timestamp=st.one_of(st.none(), header_text, st.integers(0, 2**40).map(str)),
                webhook_signature=st.one_of(st.none(), header_text, st.just("v1,AAAA v1,BBBB")),
                sign_it=st.booleans(),
            )
            def post_anything(
                body: bytes,
                content_type: str,
                token: str | None,
                idempotency_key: str | None,
                webhook_id: str | None,
                webhook_timestamp: str | None,
                webhook_signature: str | None,
                sign_it: bool,
            ) -> None:
                headers = {"Content-Type": content_type}
                for name, value in [
                    ("Authorization", None if token is None else f"Bearer {token}"),
                    ("Idempotency-Key", idempotency_key),
                    ("webhook-id", webhook_id),
                    ("webhook-timestamp", webhook_timestamp),
                    ("webhook-signature", webhook_signature),
                ]:
                    if value is not None:
                        headers[name] = value
                if sign_it:  # a correct signature over whatever is sent (ids may repeat: replays)
                    webhook_id = webhook_id or "msg_fuzz"
                    now = str(int(time.time()))
                    headers.update({"webhook-id": webhook_id, "webhook-timestamp": now})
                    headers["webhook-signature"] = (
                        "v1,"
                        + base64.b64encode(
                            hmac.new(
                                base64.b64decode(secret.removeprefix("whsec_")),
                                f"{webhook_id}.{now}.".encode() + body,
                                hashlib.sha256,
                            ).digest()
                        ).decode()
                    )

                async def send() -> tuple[int, str]:
                    async with client.post("/v1/webhooks/deploy", data=body, headers=headers) as resp:
                        return resp.status, await resp.text()

                status, text = loop.run_until_complete(send())
                statuses[status] = statuses.get(status, 0) + 1
                assert status < 500, (status, text, body, headers)

            post_anything()
        finally:
            loop.run_until_complete(env_cm.__aexit__(None, None, None))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return statuses


@pytest.mark.timeout(600)
async def test_no_request_to_the_webhook_gets_a_5xx(base_env: dict[str, str]) -> None:
    fuzz_settings = fuzzing_settings(base_env)
    statuses = await asyncio.to_thread(_fuzz, fuzz_settings)
    assert sum(statuses.values()) >= EXAMPLES
    # The examples reach every layer: auth, media type, validation, signatures and acceptance.
    assert {202, 401, 415, 422} <= statuses.keys(), statuses
