"""Image reference parsing; cases mostly from distribution/reference's own test tables."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.oci.reference import (
    DOCKER_HUB,
    DOCKER_HUB_HOSTS,
    ImageReference,
    InvalidReference,
    canonical_host,
    parse_reference,
    registry_api_host,
)

SHA256 = "sha256:" + "f" * 64
SHA512 = "sha512:" + "f" * 128
BUSYBOX = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"


# (input, host, repository, tag, digest)
VALID: list[tuple[str, str, str, str | None, str | None]] = [
    # reference_test.go TestReferenceParse, normalised as ParseNormalizedNamed does
    ("test_com", DOCKER_HUB, "library/test_com", None, None),
    ("test.com:tag", DOCKER_HUB, "library/test.com", "tag", None),
    ("test.com:5000", DOCKER_HUB, "library/test.com", "5000", None),
    ("test.com/repo:tag", "test.com", "repo", "tag", None),
    ("test:5000/repo", "test:5000", "repo", None, None),
    ("test:5000/repo:tag", "test:5000", "repo", "tag", None),
    (f"test:5000/repo@{SHA256}", "test:5000", "repo", None, SHA256),
    (f"test:5000/repo:tag@{SHA256}", "test:5000", "repo", "tag", SHA256),
    ("test.com:5000/my/image:tag", "test.com:5000", "my/image", "tag", None),
    ("lowercase:Uppercase", DOCKER_HUB, "library/lowercase", "Uppercase", None),
    ("a/" * 127 + "a:tag-puts-this-over-max", DOCKER_HUB, "a/" * 127 + "a", "tag-puts-this-over-max", None),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", None, None),
    (
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "sub-dom1.foo.com",
        "bar/baz/quux",
        "some-long-tag",
        None,
    ),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io",
        "test.example.com/my-app",
        "test.example.com",
        None,
    ),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}", "xn--7o8h.com", "myimage", "xn--7o8h.com", SHA512),
    ("foo_bar.com:8080", DOCKER_HUB, "library/foo_bar.com", "8080", None),
    ("foo/foo_bar.com:8080", DOCKER_HUB, "foo/foo_bar.com", "8080", None),
    ("192.168.1.1", DOCKER_HUB, "library/192.168.1.1", None, None),
    ("192.168.1.1:tag", DOCKER_HUB, "library/192.168.1.1", "tag", None),
    ("192.168.1.1:5000", DOCKER_HUB, "library/192.168.1.1", "5000", None),
    ("192.168.1.1/repo", "192.168.1.1", "repo", None, None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000", "repo", None, None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", None),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo", None, None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None),
    (f"[2001:db8::1]:5000/repo@{SHA256}", "[2001:db8::1]:5000", "repo", None, SHA256),
    (f"[2001:db8::1]:5000/repo:tag@{SHA256}", "[2001:db8::1]:5000", "repo", "tag", SHA256),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", None, None),
    ("[::1]:5000/repo", "[::1]:5000", "repo", None, None),
    ("[::1]:5000/a", "[::1]:5000", "a", None, None),
    # normalize_test.go TestValidateReferenceName / TestParseRepositoryInfo / TestNormalizedSplitHostname
    ("docker/docker", DOCKER_HUB, "docker/docker", None, None),
    ("library/debian", DOCKER_HUB, "library/debian", None, None),
    ("debian", DOCKER_HUB, "library/debian", None, None),
    ("docker.io/docker/docker", DOCKER_HUB, "docker/docker", None, None),
    ("docker.io/library/debian", DOCKER_HUB, "library/debian", None, None),
    ("docker.io/debian", DOCKER_HUB, "library/debian", None, None),
    ("index.docker.io/docker/docker", DOCKER_HUB, "docker/docker", None, None),
    ("index.docker.io/library/debian", DOCKER_HUB, "library/debian", None, None),
    ("index.docker.io/debian", DOCKER_HUB, "library/debian", None, None),
    ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000", "docker/docker", None, None),
    ("127.0.0.1:5000/debian", "127.0.0.1:5000", "debian", None, None),
    ("192.168.0.1:80", DOCKER_HUB, "library/192.168.0.1", "80", None),
    ("192.168.0.1:8/debian", "192.168.0.1:8", "debian", None, None),
    ("[fc00::1]:5000/docker/docker", "[fc00::1]:5000", "docker/docker", None, None),
    ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", "[fc00:1:2:3:4:5:6:7]:5000", "library/debian", None, None),
    (f"docker.io/{HEX64}", DOCKER_HUB, f"library/{HEX64}", None, None),
    (HEX64[:-1], DOCKER_HUB, f"library/{HEX64[:-1]}", None, None),
    ("docker-rules/docker", DOCKER_HUB, "docker-rules/docker", None, None),
    ("docker---rules/docker", DOCKER_HUB, "docker---rules/docker", None, None),
    ("d/docker", DOCKER_HUB, "d/docker", None, None),
    ("jess/t", DOCKER_HUB, "jess/t", None, None),
    ("dock__er/docker", DOCKER_HUB, "dock__er/docker", None, None),
    ("library/foo/bar", DOCKER_HUB, "library/foo/bar", None, None),
    ("store/foo/bar", DOCKER_HUB, "store/foo/bar", None, None),
    ("example.com:8000/privatebasee", "example.com:8000", "privatebasee", None, None),
    ("test-com:8080/foo", "test-com:8080", "foo", None, None),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", None, None),
    (f"busybox:latest@{BUSYBOX}", DOCKER_HUB, "library/busybox", "latest", BUSYBOX),
    # regexp_test.go
    (
        "registry.io/foo/project--id.module--name.ver---sion--name",
        "registry.io",
        "foo/project--id.module--name.ver---sion--name",
        None,
        None,
    ),
    (
        "example.com/some_separator__underscore/myimage",
        "example.com",
        "some_separator__underscore/myimage",
        None,
        None,
    ),
    ("do__cker/docker", DOCKER_HUB, "do__cker/docker", None, None),
    ("aa-a/a", DOCKER_HUB, "aa-a/a", None, None),
    ("registry.com:8080/myapp:tag", "registry.com:8080", "myapp", "tag", None),
    (f"localhost:8080@{SHA256}", DOCKER_HUB, "library/localhost", "8080", SHA256),
    (f"localhost:8080/name@{SHA256}", "localhost:8080", "name", None, SHA256),
    # Landfall normalisation: localhost, Docker Hub aliases and host case
    ("localhost/a", "localhost", "a", None, None),
    ("localhost:5000/a", "localhost:5000", "a", None, None),
    ("nginx", DOCKER_HUB, "library/nginx", None, None),
    ("nginx:1.27-alpine", DOCKER_HUB, "library/nginx", "1.27-alpine", None),
    ("user/app:1", DOCKER_HUB, "user/app", "1", None),
    ("registry.hub.docker.com/library/nginx", DOCKER_HUB, "library/nginx", None, None),
    ("registry-1.docker.io/nginx", DOCKER_HUB, "library/nginx", None, None),
    ("Docker.IO/nginx", DOCKER_HUB, "library/nginx", None, None),
    ("Asdf.com/foo/bar", "asdf.com", "foo/bar", None, None),
    ("GHCR.io/acme/api:v1.2.3", "ghcr.io", "acme/api", "v1.2.3", None),
    ("[FC00::1]:5000/a", "[fc00::1]:5000", "a", None, None),
    ("ghcr.io/acme/api:" + "t" * 128, "ghcr.io", "acme/api", "t" * 128, None),
    ("example.com/" + "a" * 255, "example.com", "a" * 255, None, None),
    ("a" * 247, DOCKER_HUB, "library/" + "a" * 247, None, None),
]


@pytest.mark.parametrize(
    ("text", "host", "repository", "tag", "digest"), VALID, ids=[c[0][:60] for c in VALID]
)
def test_parse_valid(text: str, host: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert ref == ImageReference(host=host, repository=repository, tag=tag, digest=digest)
    assert ref.name == f"{host}/{repository}"
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("user/app:1", "docker.io/user/app:1"),
        ("registry.hub.docker.com/library/nginx", "docker.io/library/nginx"),
        ("index.docker.io/user/app", "docker.io/user/app"),
        (f"busybox:latest@{BUSYBOX}", f"docker.io/library/busybox:latest@{BUSYBOX}"),
        ("ghcr.io/acme/api@" + SHA256, "ghcr.io/acme/api@" + SHA256),
        ("localhost:5000/a:b", "localhost:5000/a:b"),
    ],
)
def test_str_is_full_form(text: str, expected: str) -> None:
    assert str(parse_reference(text)) == expected


NAMESPACE_TOO_LONG = ("this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_" * 4).rstrip(
    "_"
) + "/docker"

# (input, fragment of the message)
INVALID: list[tuple[str, str]] = [
    ("", "empty"),
    (":justtag", "repository name is empty"),
    (f"@{SHA256}", "repository name is empty"),
    ("repo@sha256:" + "f" * 34, "sha256 needs 64 hex characters, got 34"),
    ("validname@invaliddigest:" + "f" * 64, "unsupported algorithm 'invaliddigest'"),
    ("Uppercase:tag", "repository name must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase"),
    ("docker/Docker", "repository name must be lowercase"),
    ("docker.io/docker/Docker", "repository name must be lowercase"),
    # Upstream treats an uppercase first component as a host name (its FIXME); we refuse.
    ("Docker/docker", "repository name must be lowercase"),
    ("DOCKER/docker", "repository name must be lowercase"),
    ("a/" * 128 + "a:tag", "longer than 255 characters"),
    ("example.com/" + "a" * 256, "longer than 255 characters"),
    ("a" * 248, "longer than 255 characters"),
    (NAMESPACE_TOO_LONG, "longer than 255 characters"),
    ("aa/asdf$$^/aa", "invalid repository path component 'asdf$$^'"),
    ("[2001:db8::1]", "IPv6 registry host must be followed"),
    ("[2001:db8::1]:5000", "IPv6 registry host must be followed"),
    ("[2001:db8::1]:tag", "IPv6 registry host must be followed"),
    ("[fc00::1]", "IPv6 registry host must be followed"),
    ("[fc00::1]:5000", "IPv6 registry host must be followed"),
    ("[fe80::1%eth0]:5000/repo", "invalid registry host"),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid digest"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid registry host"),
    ("[fd00123123123]:5000/a", "invalid IPv6 address"),
    ("fc00::1:5000/debian", "invalid registry host"),
    ("https://github.com/docker/docker", "URL scheme"),
    ("-docker", "invalid repository path component '-docker'"),
    ("-docker/docker", "invalid repository path component"),
    ("-docker.io/docker/docker", "invalid registry host '-docker.io'"),
    ("docker///docker", "empty path component"),
    ("docker.io/docker///docker", "empty path component"),
    ("docker/", "empty path component"),
    (HEX64, "image ID"),
    ("docker-/docker", "invalid repository path component"),
    ("-docker-/docker", "invalid repository path component"),
    ("____/____", "invalid repository path component"),
    ("_docker/_docker", "invalid repository path component"),
    ("dock..er/docker", "invalid registry host"),  # a "." makes the first component a host
    ("dock_.er/docker", "invalid registry host"),  # a "." makes the first component a host
    ("dock-.er/docker", "invalid registry host"),  # a "." makes the first component a host
    ("a..b", "invalid repository path component 'a..b'"),
    ("-a", "invalid repository path component"),
    ("-foo", "invalid repository path component"),
    ("example.com/__underscore/myimage", "invalid repository path component"),
    ("example.com/..dots/myimage", "invalid repository path component"),
    ("example.com/.dots/myimage", "invalid repository path component"),
    ("docker./docker", "invalid registry host"),
    (".docker/docker", "invalid registry host"),
    ("do__cker:8080/docker", "invalid registry host"),
    ("bad_hostname.com:8080/myapp:tag", "invalid registry host"),
    ("test_com:5000/my/image:tag", "invalid registry host 'test_com:5000'"),
    ("foo.com:http/bar", "invalid registry host"),
    (f"localhost:http/name@{SHA256}", "invalid registry host"),
    ("test.com:99999/repo", "port must be 1-65535"),
    ("registry.com:8080/myapp:invalid~tag", "invalid tag"),
    ("nginx:" + "t" * 129, "tag longer than 128 characters"),
    ("nginx:.hidden", "invalid tag"),
    ("nginx:-dash", "invalid tag"),
    ("nginx:café", "invalid tag"),  # Go's \w is ASCII-only
    ("nginx:", "tag is empty"),
    ("nginx@", "digest after '@' is empty"),
    ("registry.com:8080/myapp@sha256:badbadbadbad", "invalid digest"),
    ("registry.com:8080/myapp@bad", "invalid digest"),
    ("registry.com:8080/myapp@2bad", "invalid digest"),
    ("nginx@sha256:" + "F" * 64, "hex must be lowercase"),
    ("nginx@sha512:" + "f" * 64, "sha512 needs 128 hex characters"),
    (f"nginx@{SHA256}@{SHA256}", "more than one '@'"),
    (" nginx", "whitespace"),
    ("nginx\n", "whitespace"),  # Python's `$` would have matched before the newline
    ("ghcr.io/acme/api:v1 ", "whitespace"),
    ("x" * 3000, "longer than 2048"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID, ids=[c[0][:60] or "<empty>" for c in INVALID])
def test_parse_invalid(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert fragment in str(info.value)
    assert info.value.reference == text
    assert isinstance(info.value, ValueError)


def test_error_message_does_not_echo_a_pasted_url() -> None:
    with pytest.raises(InvalidReference) as info:
        parse_reference("https://user:s3cr3t-token@registry.example.com/app")
    assert "s3cr3t" not in str(info.value)


def test_with_tag_and_digest() -> None:
    ref = parse_reference("ghcr.io/acme/api:1.0")
    pinned = ref.with_digest(SHA256)
    assert str(pinned) == f"ghcr.io/acme/api:1.0@{SHA256}"
    assert str(pinned.with_tag("2.0")) == f"ghcr.io/acme/api:2.0@{SHA256}"
    assert ref.tag == "1.0"  # frozen: the original is untouched
    with pytest.raises(InvalidReference, match="tag longer than 128 characters"):
        ref.with_tag("t" * 129)
    with pytest.raises(InvalidReference, match="invalid digest"):
        ref.with_digest("foo")
    with pytest.raises(InvalidReference, match="invalid tag"):
        ref.with_tag("-foo")


def test_reference_is_frozen_and_hashable() -> None:
    ref = parse_reference("nginx")
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]
    assert {ref, parse_reference("docker.io/library/nginx")} == {ref}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docker.io", DOCKER_HUB),
        ("index.docker.io", DOCKER_HUB),
        ("registry-1.docker.io", DOCKER_HUB),
        ("registry.hub.docker.com", DOCKER_HUB),
        ("registry.docker.com", DOCKER_HUB),
        ("hub.docker.com", DOCKER_HUB),
        ("https://index.docker.io/v1/", DOCKER_HUB),
        ("http://registry-1.docker.io/v2/", DOCKER_HUB),
        ("Docker.IO", DOCKER_HUB),
        ("GHCR.io", "ghcr.io"),
        ("https://ghcr.io/v2/", "ghcr.io"),
        ("  quay.io  ", "quay.io"),
        ("localhost:5000", "localhost:5000"),
        ("http://localhost:5000/v2/", "localhost:5000"),
        ("https://user:s3cr3t@registry.example.com/v2", "registry.example.com"),
        ("registry.example.com/some/path", "registry.example.com"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_canonical_host(host: str, expected: str) -> None:
    assert canonical_host(host) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docker.io", "registry-1.docker.io"),
        ("https://index.docker.io/v1/", "registry-1.docker.io"),
        ("ghcr.io", "ghcr.io"),
        ("Registry.Example.com:5000", "registry.example.com:5000"),
    ],
)
def test_registry_api_host(host: str, expected: str) -> None:
    assert registry_api_host(host) == expected


# --- property: every valid reference survives str() -> parse_reference() ------------------------------

_alnum = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_separator = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def _path_components(draw: st.DrawFn) -> str:
    parts = [draw(_alnum)]
    for _ in range(draw(st.integers(0, 2))):
        parts += [draw(_separator), draw(_alnum)]
    return "".join(parts)


_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_port = st.integers(1, 65535).map(lambda p: f":{p}")


@st.composite
def _hosts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["dns", "single+port", "localhost", "ipv6", "hub"]))
    if kind == "hub":
        return DOCKER_HUB
    if kind == "dns":
        host = ".".join(draw(st.lists(_label, min_size=2, max_size=4))) + draw(st.just("") | _port)
        return DOCKER_HUB if host in DOCKER_HUB_HOSTS else host
    if kind == "single+port":
        return draw(_label) + draw(_port)
    if kind == "localhost":
        return "localhost" + draw(st.just("") | _port)
    address = draw(st.ip_addresses(v=6).map(str).filter(lambda a: "." not in a))
    return f"[{address}]" + draw(st.just("") | _port)


_tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
_digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda h: f"sha256:{h}"),
    st.text("0123456789abcdef", min_size=128, max_size=128).map(lambda h: f"sha512:{h}"),
)


@st.composite
def _references(draw: st.DrawFn) -> ImageReference:
    host = draw(_hosts())
    components = draw(st.lists(_path_components(), min_size=2 if host == DOCKER_HUB else 1, max_size=4))
    return ImageReference(
        host=host,
        repository="/".join(components),
        tag=draw(st.none() | _tags),
        digest=draw(st.none() | _digests),
    )


@settings(max_examples=300, deadline=None)
@given(_references())
def test_round_trip(ref: ImageReference) -> None:
    assert parse_reference(str(ref)) == ref


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9._:/@\[\]-]{1,60}", fullmatch=True))
def test_parse_is_idempotent_and_only_raises_invalid_reference(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    assert parse_reference(str(ref)) == ref
