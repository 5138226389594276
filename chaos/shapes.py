"""Send the hostile shapes of `chaos.strategies` to every operation of a service's `/openapi.json`.

Per operation, hypothesis draws `examples` requests: a plausible body built from the request
schema with one position (or the whole body) replaced by a hostile fragment, hostile values for
each query parameter (`?wait=`, `?limit=`, …) and now and then for a path segment or the bearer
token; the credentials are the ones the operation's `security` asks for, so most requests get past
authentication to the parsing and validation behind it. Every answer is counted by status; a 5xx
is kept (method, path, what was sent, the answer), never raised, so one run counts them all.

Used by the quick tests in `make test` (`tests/integration/*/test_hostile_shapes.py`, against one
service each) and by `make chaos`'s hostile part (`chaos.hostile.fuzz_service`, more examples).
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from chaos import strategies as hs

METHODS = ("get", "post", "put", "patch", "delete")
INFRA = ("/healthz", "/readyz", "/metrics", "/openapi.json")


@dataclass
class Credentials:
    admin_token: str = field(repr=False)
    api_key: str = field(default="", repr=False)
    ci_token: str = field(default="", repr=False)
    values: dict[str, list[str]] = field(default_factory=dict)  # real path values, by parameter name


@dataclass
class ShapeResult:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)

    def add(self, other: ShapeResult) -> None:
        self.requests += other.requests
        self.statuses.update(other.statuses)
        self.server_errors.extend(other.server_errors)


def document(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/openapi.json", timeout=10) as resp:  # noqa: S310 - loopback
        doc: dict[str, Any] = json.loads(resp.read())
    return doc


def example(schema: dict[str, Any], doc: dict[str, Any], depth: int = 0) -> Any:
    """A plausible value for `schema` (required members of objects, the first of a union)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example(doc["components"]["schemas"][name], doc, depth + 1) if depth < 8 else {}
    for union in ("oneOf", "anyOf", "allOf"):
        if union in schema:
            options = [s for s in schema[union] if s.get("type") != "null"] or schema[union]
            return example(options[0], doc, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: example(props[k], doc, depth + 1) for k in schema.get("required", props) if k in props}
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    return "a" * max(1, int(schema.get("minLength", 1)))


def _token(op: dict[str, Any], creds: Credentials) -> str | None:
    schemes = {name for entry in op.get("security", []) for name in entry}
    if "ciToken" in schemes:
        return creds.ci_token or None
    if "apiKey" in schemes:
        return creds.api_key or creds.admin_token
    if "adminToken" in schemes:
        return creds.admin_token
    return None


def fuzz_operation(
    client: httpx.Client,
    doc: dict[str, Any],
    path: str,
    method: str,
    creds: Credentials,
    *,
    examples: int,
    rng_seed: int,
) -> ShapeResult:
    op = doc["paths"][path][method]
    result = ShapeResult()
    params = op.get("parameters", [])
    query_names = [p["name"] for p in params if p["in"] == "query"]
    path_names = [p["name"] for p in params if p["in"] == "path"]
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    template = example(body_schema, doc) if body_schema else None
    places = hs.positions(template) if template is not None else []
    token = _token(op, creds)

    @seed(rng_seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def one(data: st.DataObject) -> None:
        url = path
        for name in path_names:
            hostile = data.draw(hs.path_segments)
            real = creds.values.get(name) or ["a"]
            url = url.replace(
                "{" + name + "}", hostile if hostile is not None else data.draw(st.sampled_from(real))
            )
        query = [f"{n}={data.draw(hs.query_values)}" for n in query_names if data.draw(st.integers(0, 3))]
        if query:
            url += "?" + "&".join(query)
        headers = {}
        auth = token if data.draw(st.integers(0, 9)) else data.draw(hs.hostile_tokens)
        if auth is not None:
            headers["Authorization"] = f"Bearer {auth}"
        content: bytes | None = None
        if template is not None:
            headers["Content-Type"] = "application/json"
            if data.draw(st.integers(0, 4)):
                content = hs.render(
                    template, data.draw(st.sampled_from(places)), data.draw(hs.json_fragments)
                )
            else:
                content = data.draw(hs.whole_bodies)
        try:
            raw = [
                (k.encode(), v.encode("latin-1")) for k, v in headers.items()
            ]  # httpx would refuse non-ASCII
            resp = client.request(method.upper(), url, content=content, headers=raw)
        except httpx.LocalProtocolError:  # our client would not send it (not the server's doing)
            return
        except httpx.HTTPError as exc:  # a dropped connection is as bad as a 500
            result.requests += 1
            result.statuses[599] += 1
            result.server_errors.append(f"{method.upper()} {url[:200]}: {type(exc).__name__}")
            return
        result.requests += 1
        result.statuses[resp.status_code] += 1
        if resp.status_code >= 500:
            sent = (content or b"")[:200]
            result.server_errors.append(
                f"{method.upper()} {url[:200]} body={sent!r}: {resp.status_code} {resp.text[:300]}"
            )

    one()
    return result


def fuzz_shapes(url: str, creds: Credentials, *, examples: int, rng_seed: int = 1) -> ShapeResult:
    """Every operation but health, readiness, metrics and the document, `examples` requests each."""
    doc = document(url)
    total = ShapeResult()
    with httpx.Client(base_url=url, timeout=30) as client:
        for index, path in enumerate(sorted(doc["paths"])):
            if path in INFRA:
                continue
            for method in METHODS:
                if method in doc["paths"][path]:
                    total.add(
                        fuzz_operation(
                            client, doc, path, method, creds, examples=examples, rng_seed=rng_seed + index
                        )
                    )
    return total
