"""Turning what CI sent into the one image reference the component may deploy; the Idempotency-Key shape.

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
from libs.runtime.errors import Invalid
from services.webhook_gateway.domain.errors import ImageNotAllowed

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


def resolve_image(
    info: ComponentInfo, *, image: str | None = None, tag: str | None = None, digest: str | None = None
) -> ImageReference:
    """The normalised image to deploy (exactly one of `image`, `tag`, `digest` is given).

    `Invalid` for a reference that does not parse, `ImageNotAllowed` for another repository.
    """
    own = component_reference(info)
    if tag is not None:
        try:
            return own.with_tag(tag)
        except InvalidReference as exc:
            raise Invalid("tag", exc.reason) from None
    if digest is not None:
        try:
            return own.with_digest(digest)
        except InvalidReference as exc:
            raise Invalid("digest", exc.reason) from None
    if image is None:
        raise Invalid("body", 'send exactly one of "image", "tag" or "digest"')
    try:
        ref = parse_reference(image)
    except InvalidReference as exc:
        raise Invalid("image", exc.reason) from None
    if ref.tag is None and ref.digest is None:
        raise Invalid("image", "give a tag or a digest (e.g. :1.4.2 or @sha256:…); ':latest' is not implied")
    if ref.host != own.host or ref.repository != own.repository:
        raise ImageNotAllowed(f"image {ref.name} is not this component's repository {own.name}")
    return ref


def idempotency_key(value: str | None) -> str | None:
    """The header's value if it has the shape the IETF draft allows, None when it was not sent."""
    if value is None:
        return None
    if not value or len(value) > MAX_IDEMPOTENCY_KEY or not value.isascii() or not value.isprintable():
        raise Invalid("Idempotency-Key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return value
