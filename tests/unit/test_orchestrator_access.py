"""The orchestrator's access rules without servers: audit cursors, key records, the route table's roles."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.contracts.ids import new_id
from libs.contracts.tokens import API_KEY, token_hash, token_prefix
from libs.runtime.errors import Invalid
from services.orchestrator.domain.access import ApiKey, decode_cursor, encode_cursor
from services.orchestrator.entrypoints.routes import ROUTES


def test_a_cursor_stands_for_an_event_id_and_nothing_else() -> None:
    event_id = new_id("aud")
    cursor = encode_cursor(event_id)
    assert event_id not in cursor
    assert decode_cursor(cursor) == event_id


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",
        "=" * 8,
        "A" * 65,
        encode_cursor(new_id("dep")),
        encode_cursor("aud_' OR 1=1 --"),
        "\u00e9t\u00e9",
        "%%%",
    ],
)
def test_a_cursor_nobody_made_is_invalid(cursor: str) -> None:
    with pytest.raises(Invalid) as refused:
        decode_cursor(cursor)
    assert refused.value.field == "cursor"


def test_what_other_services_learn_of_a_key_holds_no_secret() -> None:
    secret = API_KEY.generate()
    now = datetime.now(UTC)
    key = ApiKey(
        id=new_id("key"),
        org="acme",
        name="laptop",
        role="developer",
        key_sha256=token_hash(secret),
        key_prefix=token_prefix(secret),
        created_at=now,
        expires_at=None,
        revoked_at=now,
    )
    info = key.info()
    assert (info.id, info.org, info.role, info.revoked) == (key.id, "acme", "developer", True)
    text = info.model_dump_json()
    assert secret not in text
    assert token_hash(secret).hex() not in text


def test_the_route_table_gives_every_route_the_role_api_md_names() -> None:
    needs = {(r.method, r.path): r.need for r in ROUTES}
    assert needs[("POST", "/v1/orgs")] == "platform"
    assert needs[("POST", "/v1/dataplanes/enroll")] == "none"
    assert {n for (method, _), n in needs.items() if method == "GET"} == {"viewer"}
    owner = {p for (m, p), n in needs.items() if m != "GET" and n == "owner"}
    assert owner == {
        "/v1/orgs/{org}/dataplanes",
        "/v1/orgs/{org}/dataplanes/{id}",  # DELETE (issue 13): its agent's NATS user is revoked
        "/v1/orgs/{org}/dataplanes/{id}/enrollment-token",
        "/v1/orgs/{org}/environments",
        "/v1/orgs/{org}/api-keys",
        "/v1/orgs/{org}/api-keys/{id}",
    }
    developer = {p.rsplit("}", 1)[-1] for (m, p), n in needs.items() if m != "GET" and n == "developer"}
    assert developer == {
        "/projects",
        "/components",
        "",
        "/deployments",
        "/promotions",
        "/executions",
        "/config",
    }


def test_every_change_has_an_action_name_of_its_own() -> None:
    actions = [r.action for r in ROUTES if r.method != "GET"]
    assert all(actions), [r.path for r in ROUTES if r.method != "GET" and not r.action]
    assert len(actions) == len(set(actions))
