"""docker-compose.yml cannot run here (no Docker); this checks what can be checked without it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
LANDFALL = {
    "credentials": "services.credentials",
    "orchestrator": "services.orchestrator",
    "webhook-gateway": "services.webhook_gateway",
    "data-plane-agent": "services.data_plane_agent",
}


def test_every_service_has_a_healthcheck() -> None:
    services = COMPOSE["services"]
    assert set(LANDFALL) <= set(services)
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_nats_runs_with_jetstream() -> None:
    assert "-js" in COMPOSE["services"]["nats"]["command"]


@pytest.mark.parametrize("name", sorted(LANDFALL))
def test_services_only_get_settings_their_code_knows(name: str) -> None:
    svc = COMPOSE["services"][name]
    module = LANDFALL[name]
    assert svc["command"] == ["python", "-m", module]
    settings_cls = importlib.import_module(f"{module}.settings").Settings
    known = set()
    for field_name, info in settings_cls.model_fields.items():
        known.add(f"LANDFALL_{field_name.upper()}")
        alias = info.validation_alias
        if alias is not None:
            known.update(str(c).upper() for c in getattr(alias, "choices", [alias]))
    unknown = {key for key in svc["environment"] if key not in known}
    assert not unknown, f"{name}: settings the code does not read: {sorted(unknown)}"
