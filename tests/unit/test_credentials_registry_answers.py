"""Registry answers that must not crash the lookup: huge lifetimes, deep JSON (libs/oci/registry/auth.py)."""

from __future__ import annotations

import math

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from libs.oci.registry.auth import (
    DEFAULT_TOKEN_SECONDS,
    TOKEN_REUSE_MAX_SECONDS,
    Answer,
    token_lifetime,
)


@pytest.mark.parametrize(
    ("expires_in", "seconds"),
    [
        (10**400, TOKEN_REUSE_MAX_SECONDS),  # float(10**400) is an OverflowError
        (math.inf, TOKEN_REUSE_MAX_SECONDS),
        (math.nan, DEFAULT_TOKEN_SECONDS),
        (True, DEFAULT_TOKEN_SECONDS),
        (-5, DEFAULT_TOKEN_SECONDS),
        ("300", DEFAULT_TOKEN_SECONDS),
        (None, DEFAULT_TOKEN_SECONDS),
        (120, 120.0),
        (1.5, 1.5),
    ],
)
def test_a_token_lifetime_is_bounded_whatever_the_registry_says(expires_in: object, seconds: float) -> None:
    assert token_lifetime(expires_in) == seconds


def test_deeply_nested_error_bodies_have_no_codes() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    answer = Answer(404, CIMultiDictProxy(CIMultiDict()), deep)
    assert answer.error_codes() == []
    deep_object = b'{"errors": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    assert Answer(404, CIMultiDictProxy(CIMultiDict()), deep_object).error_codes() == []
