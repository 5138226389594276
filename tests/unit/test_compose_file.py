"""docker-compose.yml cannot run here (no Docker); this checks what can be checked without it."""

from __future__ import annotations

import importlib
import ipaddress
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deploy.docker import compose_secrets
from libs.runtime.ratelimit import AddressLimiter, PreAuthSettings

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
    # create_base_app (every service's) reads the pre-authentication limits from the environment itself
    known = {f"LANDFALL_{field.upper()}" for field in PreAuthSettings.model_fields}
    for field_name, info in settings_cls.model_fields.items():
        known.add(f"LANDFALL_{field_name.upper()}")
        alias = info.validation_alias
        if alias is not None:
            known.update(str(c).upper() for c in getattr(alias, "choices", [alias]))
    unknown = {key for key in svc["environment"] if key not in known}
    assert not unknown, f"{name}: settings the code does not read: {sorted(unknown)}"


SERVICES_ON_NATS = ("credentials", "orchestrator", "webhook-gateway", "console", "data-plane-agent")


@pytest.mark.parametrize("name", SERVICES_ON_NATS)
def test_every_service_reaches_nats_over_tls_as_its_own_user(name: str, tmp_path: Path) -> None:
    made = {path.name for path in compose_secrets.make(tmp_path / "compose")}
    env = COMPOSE["services"][name]["environment"]
    assert env["LANDFALL_NATS_URL"].startswith("tls://")  # nats:// to a non-loopback host is refused
    assert env["LANDFALL_NATS_CA_FILE"] == f"{compose_secrets.MOUNT}/ca.crt"
    if name == "data-plane-agent":  # its own user comes with its enrollment
        assert "LANDFALL_NATS_CREDS_FILE" not in env
    else:
        creds = env["LANDFALL_NATS_CREDS_FILE"]
        assert creds == f"{compose_secrets.MOUNT}/{name}.creds"
        assert creds.rsplit("/", 1)[1] in made
    mounts = COMPOSE["services"][name].get("volumes", [])
    assert "landfall-secrets:/landfall:ro" in mounts


def test_the_orchestrator_can_mint_and_revoke_agent_users(tmp_path: Path) -> None:
    compose_secrets.make(tmp_path / "compose")
    svc = COMPOSE["services"]["orchestrator"]
    assert svc["env_file"] == [".landfall/compose/orchestrator.env"]
    keys = {
        line.split("=", 1)[0] for line in (tmp_path / "compose/orchestrator.env").read_text().splitlines()
    }
    assert keys == {
        "LANDFALL_NATS_ACCOUNT_SIGNING_SEED",
        "LANDFALL_NATS_ACCOUNT",
        "LANDFALL_NATS_OPERATOR_SIGNING_SEED",
    }
    assert svc["environment"]["LANDFALL_NATS_SYSTEM_CREDS_FILE"] == "/landfall/system.creds"


def test_compose_s_nats_configuration_is_operator_mode_with_tls_and_nats_server_accepts_it(
    tmp_path: Path,
) -> None:
    written = compose_secrets.make(tmp_path / "compose")
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in written)
    text = (tmp_path / "compose/nats.conf").read_text()
    for part in ("tls {", "operator:", "system_account:", "type: full", "resolver_preload"):
        assert part in text
    assert "/landfall/operator.jwt" in text
    again = compose_secrets.make(tmp_path / "compose")  # kept: the same operator and CA come out
    assert (tmp_path / "compose/nats.conf").read_text() == text
    assert len(again) == len(written)
    nats = COMPOSE["services"]["nats"]
    assert nats["command"][-2:] == ["-c", "/landfall/nats.conf"]
    server = shutil.which("nats-server") or str(Path(sys.executable).parent / "nats-server")
    local = text.replace(compose_secrets.MOUNT, str(tmp_path / "compose")).replace(
        "/data/", f"{tmp_path}/data/"
    )
    (tmp_path / "compose/nats.conf").write_text(local)
    result = subprocess.run(
        [server, "-t", "-c", str(tmp_path / "compose/nats.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@dataclass
class _Request:
    remote: str
    headers: dict[str, str]


@pytest.mark.parametrize("name", ["credentials", "orchestrator", "webhook-gateway"])
def test_the_services_count_refused_sign_ins_per_browser_behind_the_console(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = COMPOSE["services"]["console"]
    address = console["networks"]["default"]["ipv4_address"]
    subnet = COMPOSE["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    for key, value in COMPOSE["services"][name]["environment"].items():
        monkeypatch.setenv(key, str(value))
    limiter = AddressLimiter(PreAuthSettings())
    forwarded = {"X-Forwarded-For": "198.51.100.23"}
    assert limiter.address(_Request(address, forwarded)) == "198.51.100.23"
    # anyone else is counted on its own address, whatever it writes
    assert limiter.address(_Request("172.31.240.1", forwarded)) == "172.31.240.1"
