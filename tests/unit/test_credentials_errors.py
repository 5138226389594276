"""The credentials domain's errors render exactly as the service's problems and RPC errors always did."""

from __future__ import annotations

import pytest

from libs.oci.vendors import FieldError
from libs.runtime.errors import Conflict, Invalid, ProblemError
from services.credentials.domain import BadPublicKey, RegistryInUse, RuleViolation, decode_public_key


def test_a_rule_violation_is_one_422_naming_every_field() -> None:
    errors = [FieldError(f"auth.f{i}", f"m{i}") for i in range(7)]
    body = ProblemError.from_domain(RuleViolation(errors)).body()
    assert body["status"] == 422
    assert body["title"] == "Validation Failed"
    assert body["type"].endswith("/validation-failed")
    assert body["errors"] == [{"field": e.field, "message": e.message} for e in errors]
    assert body["detail"] == "; ".join(f"auth.f{i}: m{i}" for i in range(5))


def test_a_bad_public_key_is_invalid_with_its_own_message() -> None:
    with pytest.raises(BadPublicKey) as exc:
        decode_public_key("%%%")
    assert isinstance(exc.value, Invalid)
    assert exc.value.detail == str(exc.value) == "recipient_public_key is not valid base64"


def test_a_registry_in_use_names_its_components_and_shows_twenty() -> None:
    components = [f"shop/c{i}" for i in range(25)]
    exc = RegistryInUse(components)
    assert isinstance(exc, Conflict)
    assert exc.components == components
    assert exc.detail.startswith("the registry is used by 25 component(s): shop/c0, ")
    assert "shop/c19 ..." in exc.detail
    assert "shop/c20" not in exc.detail
