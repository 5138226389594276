"""Image references: parse, validate and normalise what users type as an image.

Why this exists: users give Landfall image strings ("nginx", "ghcr.io/acme/api:1.2",
"123456789012.dkr.ecr.eu-west-1.amazonaws.com/app@sha256:...") and the string we hand
to Kubernetes must mean exactly what the kubelet and containerd will make of it. We
therefore follow the grammar of github.com/distribution/reference (regexp.go) and the
normalisation of its `ParseNormalizedNamed` (normalize.go), and reject with a message a
human can act on instead of the upstream catch-all "invalid reference format".

What is subtle:

* Where the registry host ends. Only the first `/`-separated component can be a host,
  and only if it contains `.` or `:` or is `localhost`; otherwise the whole name is a
  Docker Hub path ("user/app" is docker.io/user/app, "localhost:5000/a" is a host).
  A name without any `/` is never a host: "test.com:5000" is the Docker Hub repository
  "library/test.com" with the tag "5000", exactly as upstream parses it.
* The tag is split at the last `:` after the last `/`, so a port (always before a `/`)
  is never mistaken for a tag.
* Docker Hub single-component names get the implicit "library/" namespace, and every
  Docker Hub alias (index.docker.io, registry-1.docker.io, ...) folds to "docker.io".
* Go's regexp `\\w` is ASCII-only while Python's is Unicode, and Python's `$` matches
  before a trailing newline: every pattern here is compiled with `re.ASCII` and used
  with `fullmatch`.
* Deliberate differences from upstream, each rejecting what could never be pulled or
  making equal things compare equal: hosts are lowercased (DNS is case-insensitive);
  an uppercase first component such as "MyOrg/app" is a lowercase error rather than a
  registry called "MyOrg" (upstream's own FIXME); ports above 65535 and malformed IPv6
  addresses are refused; a digest must use a registered algorithm (sha256, sha384,
  sha512) with its exact lowercase hex length, as go-digest enforces at pull time.
* The 255-character limit applies to the repository path only, not host + path: that
  is upstream since distribution/reference v0.6.0 (PR #9, "Exclude domain from name
  length check").
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import Final

DOCKER_HUB: Final = "docker.io"
DOCKER_HUB_API_HOST: Final = "registry-1.docker.io"
OFFICIAL_REPO_PREFIX: Final = "library/"
REPOSITORY_PATH_MAX: Final = 255
TAG_MAX: Final = 128
# Generous: a legitimate reference is under 1000 characters. Bounds regex work on hostile input.
REFERENCE_MAX: Final = 2048

# Every host name that reaches Docker Hub's registry (or is Docker's config key for it).
DOCKER_HUB_HOSTS: Final = frozenset(
    {
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "registry.hub.docker.com",
        "registry.docker.com",
        "hub.docker.com",
    }
)

# Registered digest algorithms and the length of their hex encoding (go-digest).
DIGEST_HEX_LENGTHS: Final = {"sha256": 64, "sha384": 96, "sha512": 128}

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::(?P<port>[0-9]+))?", re.ASCII)
_IPV6_HOST_RE = re.compile(r"\[(?P<address>[a-fA-F0-9:]+)\](?::(?P<port>[0-9]+))?", re.ASCII)
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*", re.ASCII)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(
    r"(?P<algorithm>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):(?P<hex>[0-9a-fA-F]{32,})", re.ASCII
)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)


class InvalidReference(ValueError):
    """An image reference (or a tag, digest or host in one) that cannot be used.

    `str(error)` is the human-readable reason only; the input is kept on `.reference`
    and deliberately left out of the message (a pasted URL may carry credentials).
    """

    def __init__(self, reason: str, reference: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.reference = reference


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalised image reference: always has a host; tag and digest are optional.

    Build one with `parse_reference`; the constructor does not validate.
    """

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The repository name including its host, e.g. "docker.io/library/nginx"."""
        return f"{self.host}/{self.repository}"

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> ImageReference:
        """The same reference with `tag` (any digest is kept, as upstream `WithTag` does)."""
        return dataclasses.replace(self, tag=validate_tag(tag))

    def with_digest(self, digest: str) -> ImageReference:
        """The same reference pinned to `digest` (any tag is kept)."""
        return dataclasses.replace(self, digest=validate_digest(digest))


def canonical_host(host: str) -> str:
    """The registry host as credentials and vendors are keyed: lowercase, no scheme or path.

    Accepts what appears in image references and in Docker config `auths` keys, e.g.
    "GHCR.io", "https://index.docker.io/v1/", "http://localhost:5000/v2/". Every Docker
    Hub alias becomes "docker.io". This does not validate; `parse_reference` does.
    """
    value = host.strip()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("/", 1)[0]
    # Never keep userinfo ("user:token@host") from a pasted URL.
    value = value.rpartition("@")[2].lower()
    return DOCKER_HUB if value in DOCKER_HUB_HOSTS else value


def registry_api_host(host: str) -> str:
    """The host that serves the OCI distribution API (/v2/) for `host`."""
    canonical = canonical_host(host)
    return DOCKER_HUB_API_HOST if canonical == DOCKER_HUB else canonical


def validate_tag(tag: str) -> str:
    if tag == "":
        raise InvalidReference("tag is empty", tag)
    if len(tag) > TAG_MAX:
        raise InvalidReference(f"tag longer than {TAG_MAX} characters", tag)
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReference(
            "invalid tag: a tag may contain only ASCII letters, digits, '_', '.' and '-', "
            "and must not start with '.' or '-'",
            tag,
        )
    return tag


def validate_digest(digest: str) -> str:
    match = _DIGEST_RE.fullmatch(digest)
    if match is None:
        raise InvalidReference(
            "invalid digest: expected <algorithm>:<hex>, e.g. sha256: followed by 64 hex characters",
            digest,
        )
    algorithm, hex_part = match["algorithm"], match["hex"]
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        supported = ", ".join(sorted(DIGEST_HEX_LENGTHS))
        raise InvalidReference(
            f"invalid digest: unsupported algorithm {algorithm!r} (supported: {supported})", digest
        )
    if len(hex_part) != expected:
        raise InvalidReference(
            f"invalid digest: {algorithm} needs {expected} hex characters, got {len(hex_part)}", digest
        )
    if hex_part != hex_part.lower():
        raise InvalidReference(f"invalid digest: {algorithm} hex must be lowercase", digest)
    return digest


def validate_host(host: str) -> str:
    """Validate a registry host (with optional port) as it appears in a reference; lowercase it."""
    ipv6 = _IPV6_HOST_RE.fullmatch(host)
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6["address"])
        except ValueError:
            raise InvalidReference(f"invalid IPv6 address in registry host {host!r}", host) from None
        port = ipv6["port"]
    else:
        domain = _DOMAIN_RE.fullmatch(host)
        if domain is None:
            raise InvalidReference(
                f"invalid registry host {host!r}: expected a host name or IP address with an optional "
                "port (labels of letters, digits and inner '-', separated by '.'; IPv6 in brackets)",
                host,
            )
        port = domain["port"]
    if port is not None and not 0 < int(port) <= 65535:
        raise InvalidReference(f"invalid registry host {host!r}: port must be 1-65535", host)
    lowered = host.lower()
    return DOCKER_HUB if lowered in DOCKER_HUB_HOSTS else lowered


def _validate_path(path: str, reference: str) -> None:
    for component in path.split("/"):
        if component == "":
            raise InvalidReference(
                "repository name has an empty path component (leading, trailing or doubled '/')", reference
            )
        if component != component.lower():
            raise InvalidReference("repository name must be lowercase", reference)
        if not _PATH_COMPONENT_RE.fullmatch(component):
            raise InvalidReference(
                f"invalid repository path component {component!r}: use lowercase letters and digits, "
                "separated by a single '.', '_' or '__', or by dashes; start and end with a letter or digit",
                reference,
            )
    if len(path) > REPOSITORY_PATH_MAX:
        raise InvalidReference(
            f"repository name longer than {REPOSITORY_PATH_MAX} characters (without the host)", reference
        )


def _split_host(name: str) -> tuple[str, str]:
    """Upstream `splitDockerDomain`, minus its uppercase-means-host quirk."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first.lower() == "localhost"):
        host = validate_host(first)
        path = rest
    else:
        host, path = DOCKER_HUB, name
    if host == DOCKER_HUB and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return host, path


def parse_reference(value: str) -> ImageReference:
    """Parse and normalise an image reference as `ParseNormalizedNamed` does.

    "nginx" -> docker.io/library/nginx, "user/app:1" -> docker.io/user/app:1,
    "localhost:5000/a@sha256:..." keeps its host. No default tag is added.
    Raises `InvalidReference` saying what is wrong.
    """
    if value == "":
        raise InvalidReference("image reference is empty", value)
    if len(value) > REFERENCE_MAX:
        raise InvalidReference(f"image reference longer than {REFERENCE_MAX} characters", value)
    if any(c.isspace() for c in value):
        raise InvalidReference("image reference must not contain whitespace", value)
    if "://" in value:
        raise InvalidReference(
            "image reference must not include a URL scheme such as https://; "
            "write host/repository[:tag][@digest]",
            value,
        )
    if _IDENTIFIER_RE.fullmatch(value):
        raise InvalidReference(
            "a 64-character hex string is an image ID, not a repository name; "
            "pin an image with repository@sha256:<hex> instead",
            value,
        )

    name_and_tag, at, digest = value.partition("@")
    if at:
        if "@" in digest:
            raise InvalidReference("image reference has more than one '@'", value)
        if digest == "":
            raise InvalidReference("digest after '@' is empty", value)
        try:
            validate_digest(digest)
        except InvalidReference as exc:
            raise InvalidReference(exc.reason, value) from None

    if name_and_tag.startswith("[") and "/" not in name_and_tag:
        raise InvalidReference("an IPv6 registry host must be followed by /<repository>", value)
    name, tag = name_and_tag, None
    colon = name_and_tag.rfind(":")
    if colon > name_and_tag.rfind("/"):
        name, tag = name_and_tag[:colon], name_and_tag[colon + 1 :]
        try:
            validate_tag(tag)
        except InvalidReference as exc:
            raise InvalidReference(exc.reason, value) from None
    if name == "":
        raise InvalidReference("repository name is empty", value)

    try:
        host, path = _split_host(name)
    except InvalidReference as exc:
        raise InvalidReference(exc.reason, value) from None
    _validate_path(path, value)
    return ImageReference(host=host, repository=path, tag=tag, digest=digest if at else None)
