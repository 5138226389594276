"""The imageID a kubelet would report for a container of the sandbox's simulated pods.

A real kubelet reports the digest of what it pulled (`<host>/<repository>@sha256:…`); the
sandbox pulls nothing, so it says the digest the image names, or, for a tag on a loopback
registry (the test stack's docker-registry), the digest that registry answers for the tag now,
asked with one HEAD (a millisecond on loopback; a dead port fails at once). Any other tag gets
"" (what a kubelet shows before a pull), rather than a made-up digest someone might deploy.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Final

from libs.oci.reference import InvalidReference, parse_reference
from libs.oci.registry.client import MANIFEST_ACCEPT

_LOOPBACK: Final = ("127.0.0.1", "localhost", "[::1]")


def image_id(image: str) -> str:
    try:
        ref = parse_reference(image)
    except InvalidReference:
        return ""
    if ref.digest is not None:
        return f"{ref.name}@{ref.digest}"
    if ref.host.rsplit(":", 1)[0] not in _LOOPBACK:
        return ""
    request = urllib.request.Request(
        f"http://{ref.host}/v2/{ref.repository}/manifests/{ref.tag or 'latest'}",
        method="HEAD",
        headers={"Accept": MANIFEST_ACCEPT},
    )
    try:
        with urllib.request.urlopen(request, timeout=1.0) as answer:  # noqa: S310 - plain http to loopback only
            found = str(answer.headers.get("Docker-Content-Digest") or "")
    except (urllib.error.URLError, OSError, ValueError):
        return ""
    return f"{ref.name}@{found}" if found.startswith("sha256:") else ""
