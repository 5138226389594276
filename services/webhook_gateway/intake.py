"""Turning what CI sent into the one image reference the component may deploy.

Rules: `image` must name the component's registry host and repository (after
normalisation, so "GHCR.io/acme/api" and "ghcr.io/acme/api" are the same, and
every Docker Hub alias is "docker.io") and carry a tag or a digest: an untagged
reference would silently mean ":latest", which no CI pipeline should deploy.
`tag` and `digest` are applied to the component's repository.
"""

from __future__ import annotations

from libs.contracts.messages import ComponentInfo
from libs.oci.reference import (
    ImageReference,
    InvalidReference,
    canonical_host,
    parse_reference,
)
from libs.runtime.errors import ProblemError, invalid
from services.webhook_gateway.models import DeployRequest

MAX_IDEMPOTENCY_KEY = 255


def component_reference(info: ComponentInfo) -> ImageReference:
    """The component's repository as a normalised reference without tag or digest."""
    host = canonical_host(info.registry_host)
    repository = info.repository.strip("/")
    for prefix in (f"{host}/", f"{info.registry_host.lower()}/"):
        repository = repository.removeprefix(prefix)
    try:
        ref = parse_reference(f"{host}/{repository}")
    except InvalidReference:
        return ImageReference(host=host, repository=repository)
    return ImageReference(host=ref.host, repository=ref.repository)


def resolve_image(request: DeployRequest, info: ComponentInfo) -> ImageReference:
    """The normalised image to deploy; 422 for an invalid reference, 403 for another repository."""
    own = component_reference(info)
    if request.tag is not None:
        try:
            return own.with_tag(request.tag)
        except InvalidReference as exc:
            raise invalid("tag", exc.reason) from None
    if request.digest is not None:
        try:
            return own.with_digest(request.digest)
        except InvalidReference as exc:
            raise invalid("digest", exc.reason) from None
    assert request.image is not None
    try:
        ref = parse_reference(request.image)
    except InvalidReference as exc:
        raise invalid("image", exc.reason) from None
    if ref.tag is None and ref.digest is None:
        raise invalid("image", "give a tag or a digest (e.g. :1.4.2 or @sha256:…); ':latest' is not implied")
    if ref.host != own.host or ref.repository != own.repository:
        raise ProblemError(
            403,
            "Forbidden",
            f"image {ref.name} is not this component's repository {own.name}",
            kind="image-not-allowed",
        )
    return ref


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > MAX_IDEMPOTENCY_KEY or not value.isascii() or not value.isprintable():
        raise invalid("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return value
