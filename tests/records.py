"""The orchestrator's records as the unit tests build them: one of each, consistent with each other
(`acme/shop/api` on ghcr.io, planned for environment `dev` of data plane `dp_x`).

A test that needs another value says so with `dataclasses.replace(RECORD, field=...)`, so what it
changes is what it is about. Written positionally, in the field order of
services/orchestrator/domain/records.py, so that one glance shows a whole record.
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.orchestrator.domain.records import Component, DataPlane, Deployment, Execution

T0 = datetime(2025, 1, 1, tzinfo=UTC)
COMPONENT = Component(
    "cmp_x", "acme", "shop", "api", "service", "reg_x", "ghcr.io", "acme/api", "ghcr.io/acme/api:1.0",
    8080, None, None, {"A": "1"}, T0, T0,
)  # fmt: skip
PLANE = DataPlane("dp_x", "acme", "eu", "nginx", "a2V5", T0, "1.0", T0, T0)
DEPLOYMENT = Deployment(
    "dep_x", "cmp_x", "acme", "shop", "api", "dev", "dp_x", 7, "ghcr.io/acme/api:1.0", None, "pending",
    None, None, "webhook", [], 0, T0, T0, None, None, None, None, T0,
)  # fmt: skip
EXECUTION = Execution(
    "exe_x", "dep_x", "cmp_x", "dev", ["--once"], "pending", None, None, 0, T0, None, None, T0
)
