"""Pure rules of the gateway: rate limits, Standard Webhooks signatures, image authorisation."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest

from libs.contracts.messages import ComponentInfo
from libs.oci.reference import ImageReference
from libs.runtime.errors import DomainError, ProblemError
from libs.runtime.ratelimit import RateLimiter, retry_after_header
from services.webhook_gateway.domain.images import component_reference, idempotency_key
from services.webhook_gateway.domain.images import resolve_image as resolve_fields
from services.webhook_gateway.domain.signatures import (
    SignatureError,
    generate_secret,
    secret_key,
    sign,
    verify,
)
from services.webhook_gateway.schemas import DeployRequest
from tests.support import component_info

T = TypeVar("T")


def rendered(call: Callable[[], T]) -> T:
    """Run a domain rule; a refusal comes out as the problem the HTTP middleware would render."""
    try:
        return call()
    except DomainError as exc:
        raise ProblemError.from_domain(exc) from exc


def resolve_image(body: DeployRequest, info: ComponentInfo) -> ImageReference:
    """The rule applied to a decoded body, as the webhook's entry point does."""
    return rendered(lambda: resolve_fields(info, image=body.image, tag=body.tag, digest=body.digest))


# --- rate limit -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("t") for _ in range(3)] == [None, None, None]
    wait = limiter.take("t")
    assert wait == pytest.approx(0.5)
    assert retry_after_header(wait or 0) == "1"
    clock.now += 0.5
    assert limiter.take("t") is None
    assert limiter.take("t") is not None
    assert limiter.take("other") is None  # per key


def test_bucket_refills_to_the_burst_only() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10.0, burst=2, clock=clock)
    limiter.take("t")
    clock.now += 3600
    assert [limiter.take("t") is None for _ in range(3)] == [True, True, False]


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.take(f"k{i}")
        clock.now += 0.001
    assert len(limiter._buckets) <= 100


# --- signatures -------------------------------------------------------------------------------


def test_standard_webhooks_reference_vector() -> None:
    """The example from the Standard Webhooks specification."""
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _headers(key: bytes, body: bytes, ts: int = 1_700_000_000, msg: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": msg, "webhook-timestamp": str(ts), "webhook-signature": sign(key, msg, ts, body)}


def test_verify_accepts_a_good_signature_within_the_window() -> None:
    key = secret_key(generate_secret())
    body = b'{"tag":"1"}'
    assert verify(key, _headers(key, body), body, now=1_700_000_000 + 299, tolerance=300) == "msg_1"
    assert verify(key, _headers(key, body), body, now=1_700_000_000 - 299, tolerance=300) == "msg_1"


@pytest.mark.parametrize(
    ("mutate", "failure"),
    [
        (lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, "missing"),
        (lambda h: {**h, "webhook-id": ""}, "missing"),
        (lambda h: {**h, "webhook-timestamp": "1.5"}, "invalid"),
        (lambda h: {**h, "webhook-timestamp": "1700000100"}, "invalid"),  # signed over another timestamp
        (lambda h: {**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, "invalid"),
        (lambda h: {**h, "webhook-id": "x" * 256}, "invalid"),
    ],
)
def test_verify_refuses(mutate: object, failure: str) -> None:
    key = secret_key(generate_secret())
    body = b"{}"
    headers = mutate(_headers(key, body))  # type: ignore[operator]
    with pytest.raises(SignatureError) as info:
        verify(key, headers, body, now=1_700_000_000, tolerance=300)
    assert info.value.failure == failure


def test_verify_refuses_stale_and_future_timestamps() -> None:
    key = secret_key(generate_secret())
    for skew in (-301, 301):
        with pytest.raises(SignatureError) as info:
            verify(key, _headers(key, b"{}"), b"{}", now=1_700_000_000 + skew, tolerance=300)
        assert info.value.failure == "stale"


def test_secrets_have_at_least_24_random_bytes() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(s.startswith("whsec_") and len(secret_key(s)) >= 24 for s in secrets)


# --- image rules ------------------------------------------------------------------------------


def test_tag_and_digest_use_the_components_repository() -> None:
    digest = "sha256:" + "0" * 64
    assert str(resolve_image(DeployRequest(tag="1.2"), component_info())) == "ghcr.io/acme/api:1.2"
    assert str(resolve_image(DeployRequest(digest=digest), component_info())) == f"ghcr.io/acme/api@{digest}"
    assert (
        str(resolve_image(DeployRequest(tag="7"), component_info(host="index.docker.io", repository="nginx")))
        == "docker.io/library/nginx:7"
    )


def test_component_reference_tolerates_a_repository_with_its_host() -> None:
    assert (
        component_reference(component_info(host="ghcr.io", repository="ghcr.io/acme/api")).name
        == "ghcr.io/acme/api"
    )
    assert (
        component_reference(component_info(host="https://GHCR.io/", repository="acme/api")).name
        == "ghcr.io/acme/api"
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (DeployRequest(image="ghcr.io/acme/web:1"), 403, None),
        (DeployRequest(image="quay.io/acme/api:1"), 403, None),
        (DeployRequest(image="ghcr.io/acme/api"), 422, "image"),
        (DeployRequest(image="ghcr.io/acme/api:-x"), 422, "image"),
        (DeployRequest(tag="a" * 129), 422, "tag"),
        (DeployRequest(digest="sha256:abc"), 422, "digest"),
    ],
)
def test_refusals(body: DeployRequest, status: int, field: str | None) -> None:
    with pytest.raises(ProblemError) as info:
        resolve_image(body, component_info())
    assert info.value.status == status
    if field:
        assert info.value.errors[0]["field"] == field


def test_exactly_one_field() -> None:
    for fields in ({}, {"image": "a:1", "tag": "1"}, {"tag": "1", "digest": "sha256:" + "0" * 64}):
        with pytest.raises(ValueError, match="exactly one"):
            DeployRequest.model_validate(fields)


def test_idempotency_key_shape() -> None:
    assert idempotency_key(None) is None
    assert idempotency_key("run-1") == "run-1"
    for bad in ("", "x" * 256, "é", "a\tb"):
        with pytest.raises(ProblemError):
            rendered(lambda: idempotency_key(bad))  # noqa: B023
