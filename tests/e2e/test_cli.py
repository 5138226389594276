"""The installed `landfall` executable against the real stack (issue 15, CLI.md).

Every call runs `.venv/bin/landfall` as a subprocess with LANDFALL_URL set to the stack's one
address (the front door) and LANDFALL_TOKEN, HOME and XDG_CONFIG_HOME in a temporary directory.
Every run also checks that no secret it was given (the token, what went to standard input)
appears in its output. One stack for the module; the tests run in file order and share what
the first one creates (a registry, a component and its CI token).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from libs.devstack.stack import Stack, free_ports, http

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LANDFALL = Path(sys.executable).parent / "landfall"
NAME = "cli" + uuid.uuid4().hex[:6]
REPO = f"team/{NAME}"


class World:
    """What the tests share: the stack, a home directory, the component and its CI token."""

    def __init__(self, stack: Stack, home: Path) -> None:
        self.stack = stack
        self.home = home
        self.ci_token = ""
        self.digests: dict[str, str] = {}
        self.secrets: list[str] = [stack.admin_token]


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> World:
    home = tmp_path_factory.mktemp("home")
    w = World(stack, home)
    for tag in ("1.0", "1.1"):
        w.digests[tag] = stack.registry.push_image(REPO, tag)
    return w


def landfall(
    w: World,
    *args: str,
    token: str | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    url: str | None = None,
    timeout: float = 60,
    check: int | None = 0,
) -> subprocess.CompletedProcess[str]:
    """Run the installed CLI; assert its exit code (unless check=None) and that no secret leaked."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LANDFALL_", "VAULT_"))}
    base.update(
        {
            "HOME": str(w.home),
            "XDG_CONFIG_HOME": str(w.home / ".config"),
            "LANDFALL_URL": url if url is not None else w.stack.front_url,
            "LANDFALL_TOKEN": w.stack.admin_token if token is None else token,
            "PATH": f"{LANDFALL.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    base.update(env or {})
    base = {k: v for k, v in base.items() if v != ""}
    proc = subprocess.run(
        [str(LANDFALL), *args], input=stdin, capture_output=True, text=True, env=base, timeout=timeout
    )
    given = [s for s in (base.get("LANDFALL_TOKEN"), stdin and stdin.strip(), *w.secrets) if s]
    for secret in given:
        assert secret not in proc.stdout, f"a secret leaked from {args}"
        assert secret not in proc.stderr, f"a secret leaked from {args}"
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


# --- the happy path, from a registry to production ---------------------------------------------


def test_from_a_registry_to_production(world: World) -> None:
    w, host = world, world.stack.registry.host
    reg = as_json(landfall(w, "registries", "add", NAME, "--type", "anonymous", "--host", host, "-o", "json"))
    assert reg["id"].startswith("reg_")
    assert reg["display_name"] == NAME
    listed = as_json(landfall(w, "-o", "json", "registries", "list"))
    assert reg["id"] in [r["id"] for r in listed["items"]]
    assert NAME in landfall(w, "registries", "list").stdout  # the table
    tested = landfall(w, "registries", "test", NAME, "--repository", REPO)
    assert tested.stdout.startswith("ok:")

    comp = as_json(
        landfall(
            w,
            *("components", "create", NAME, "--type", "service", "--registry", NAME),
            *("--image", f"{host}/{REPO}:1.0", "--port", "8080", "-o", "json"),
        )
    )
    assert comp["name"] == NAME
    assert comp["registry_id"] == reg["id"]
    assert NAME in landfall(w, "components", "list").stdout

    created = as_json(landfall(w, "tokens", "create", NAME, "--name", "ci", "-o", "json"))
    assert created["token"].startswith("lfci_")
    w.ci_token = created["token"]
    tokens = as_json(landfall(w, "tokens", "list", NAME, "-o", "json"))
    assert [t["id"] for t in tokens["items"]] == [created["id"]]
    assert "token" not in tokens["items"][0]

    # CI: the token names the component; progress on stderr, the verdict on the last stdout line.
    ci = landfall(w, "deploy", "--tag", "1.0", "--wait", token=w.ci_token)
    last = ci.stdout.strip().splitlines()[-1]
    assert last.startswith("succeeded:")
    assert w.digests["1.0"] in last
    assert f"{REPO}:1.0" in last
    assert "pending" in ci.stderr or "accepted" in ci.stderr
    assert "succeeded" in ci.stderr

    # A person: deploy by tag, by digest; then promote twice.
    dep = as_json(landfall(w, "deploy", NAME, "--tag", "1.1", "--wait", "-o", "json"))
    assert dep["status"] == "succeeded"
    assert dep["digest"] == w.digests["1.1"]
    by_digest = as_json(landfall(w, "deploy", NAME, "--digest", w.digests["1.0"], "--wait", "-o", "json"))
    assert by_digest["status"] == "succeeded"
    assert by_digest["digest"] == w.digests["1.0"]
    landfall(w, "deploy", NAME, "--tag", "1.1", "--wait")
    promoted = as_json(
        landfall(w, "promote", NAME, "--from", "development", "--to", "staging", "--wait", "-o", "json")
    )
    assert promoted["status"] == "succeeded"
    assert promoted["environment"] == "staging"
    assert promoted["digest"] == w.digests["1.1"]
    final = landfall(w, "promote", NAME, "--from", "staging", "--to", "production", "--wait")
    assert final.stdout.strip().splitlines()[-1].startswith("succeeded:")

    shown = as_json(landfall(w, "components", "show", NAME, "-o", "json"))
    assert {env: r["digest"] for env, r in shown["environments"].items()} == {
        "development": w.digests["1.1"],
        "staging": w.digests["1.1"],
        "production": w.digests["1.1"],
    }
    assert "production" in landfall(w, "components", "show", NAME).stdout

    history = as_json(landfall(w, "history", NAME, "-o", "json"))
    assert len(history["items"]) == 6
    assert history["items"][0]["environment"] == "production"
    assert "staging" in landfall(w, "history", NAME).stdout

    # status with either kind of token, once and with --wait
    for token in (w.ci_token, w.stack.admin_token):
        assert as_json(landfall(w, "status", dep["id"], "-o", "json", token=token))["status"] == "succeeded"
    assert landfall(w, "status", dep["id"], "--wait").stdout.startswith("succeeded:")


def test_data_planes_and_a_manual_task(world: World) -> None:
    w = world
    planes = as_json(landfall(w, "dataplanes", "list", "-o", "json"))
    assert "local" in [p["name"] for p in planes["items"]]
    assert "local" in landfall(w, "dataplanes", "list").stdout
    plane = as_json(landfall(w, "dataplanes", "create", "edge" + uuid.uuid4().hex[:4], "-o", "json"))
    assert plane["enrollment_token"]
    deleted = as_json(landfall(w, "dataplanes", "delete", plane["name"], "-o", "json"))
    assert deleted == {"id": plane["id"], "deleted": True}
    assert plane["id"] not in landfall(w, "dataplanes", "list").stdout
    in_use = landfall(w, "dataplanes", "delete", "local", check=6)  # the environments use it: 409
    assert "dataplane_in_use" in in_use.stderr or "environments use" in in_use.stderr, in_use.stderr

    task = "task" + uuid.uuid4().hex[:4]
    image = f"{w.stack.registry.host}/{REPO}:1.0"
    landfall(w, "components", "create", task, "--type", "manual-task", "--registry", NAME, "--image", image)
    landfall(w, "deploy", task, "--tag", "1.0", "--wait")
    ran = as_json(landfall(w, "run", task, "-o", "json", "--", "migrate", "--dry-run"))
    assert ran["id"].startswith("exe_")
    assert ran["args"] == ["migrate", "--dry-run"]


def test_registry_secrets_come_from_stdin_or_a_file_and_never_show(world: World, tmp_path: Path) -> None:
    w = world
    password = "pw-" + secrets.token_urlsafe(16)
    w.secrets.append(password)
    name = "basic" + uuid.uuid4().hex[:4]
    reg = as_json(
        landfall(
            w,
            *("registries", "add", name, "--type", "basic", "--host", "ghcr.io", "--username", "robot"),
            *("--password-stdin", "-o", "json"),
            stdin=password + "\n",
        )
    )
    assert reg["auth_type"] == "basic"
    assert reg["username"] == "robot"
    landfall(w, "registries", "delete", name)

    import base64

    auth = base64.b64encode(b"robot:" + password.encode()).decode()
    w.secrets.append(auth)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"registry.example.com": {"auth": auth}}}))
    dc = as_json(
        landfall(
            w,
            "registries",
            "add",
            name,
            "--type",
            "docker-config",
            "--config-file",
            str(config),
            "-o",
            "json",
        )
    )
    assert dc["host"] == "registry.example.com"
    landfall(w, "registries", "delete", dc["id"])
    # a docker config the server refuses: the field is named, the content is not repeated
    config.write_text(json.dumps({"auths": {"a.example": {"auth": auth}, "b.example": {"auth": auth}}}))
    bad = landfall(
        w, "registries", "add", name, "--type", "docker-config", "--config-file", str(config), check=6
    )
    assert "auth" in bad.stderr


# --- exit codes ------------------------------------------------------------------------------------


def test_usage_errors_exit_2(world: World) -> None:
    landfall(world, "bogus", check=2)
    landfall(world, "components", "list", "--bogus", check=2)
    landfall(world, "components", "show", check=2)
    landfall(world, "deploy", NAME, check=2)  # none of --tag/--image/--digest
    landfall(world, "registries", "add", "x", "--type", "nope", check=2)
    assert "CI token" in landfall(world, "deploy", NAME, "--tag", "1.0", token=world.ci_token, check=2).stderr
    landfall(world, "components", "list", url="", check=2)  # no address at all


def test_refused_not_found_invalid(world: World) -> None:
    w = world
    refused = landfall(w, "components", "list", token="lfk_" + "x" * 30, check=3)
    assert "HTTP 401" in refused.stderr
    assert "landfall login" in refused.stderr
    landfall(w, "deploy", "--tag", "1.0", token="lfci_" + "x" * 30, check=3)
    missing = landfall(w, "components", "show", "nope" + uuid.uuid4().hex[:6], check=4)
    assert "HTTP 404" in missing.stderr
    assert "landfall components list" in missing.stderr
    landfall(w, "registries", "test", "no-such-registry", check=4)
    host = w.stack.registry.host
    create = (
        "components",
        "create",
        NAME,
        "--type",
        "service",
        "--registry",
        NAME,
        "--image",
        f"{host}/{REPO}:1",
    )
    dup = landfall(w, *create, check=6)
    assert "HTTP 409" in dup.stderr
    bad = landfall(w, "components", "create", "Not_A_Name", *create[3:], check=6)
    assert "HTTP 422" in bad.stderr
    assert "name" in bad.stderr


def test_a_missing_tag_fails_with_its_reason(world: World) -> None:
    proc = landfall(world, "deploy", "--tag", "no-such-tag", "--wait", token=world.ci_token, check=1)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("failed:")
    assert "image_not_found" in last
    doc = as_json(landfall(world, "deploy", NAME, "--tag", "nope", "--wait", "-o", "json", check=1))
    assert doc["status"] == "failed"
    assert doc["reason"] == "image_not_found"


def test_unavailable_exits_5(world: World) -> None:
    (port,) = free_ports(1)
    down = landfall(world, "components", "list", url=f"http://127.0.0.1:{port}", check=5)
    assert "cannot reach" in down.stderr
    world.stack.stop_service("credentials")
    try:
        stopped = landfall(world, "registries", "list", check=5)
        assert "HTTP 503" in stopped.stderr
        assert "retry" in stopped.stderr
    finally:
        world.stack.restart_service("credentials")


def test_wait_times_out_then_survives_a_gateway_restart(world: World) -> None:
    """With the agent away nothing becomes final: --timeout runs out (5); then a --wait that
    outlives a gateway restart still reports the rollout once the agent is back."""
    w = world
    w.stack.stop_service("data_plane_agent")
    try:
        late = landfall(w, "deploy", "--tag", "1.0", "--wait", "--timeout", "2", token=w.ci_token, check=5)
        assert "not final after 2 s" in late.stderr
        waiting = subprocess.Popen(
            [str(LANDFALL), "deploy", "--tag", "1.1", "--wait", "--timeout", "60", "-o", "json"],
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("LANDFALL_")},
                "HOME": str(w.home),
                "XDG_CONFIG_HOME": str(w.home / ".config"),
                "LANDFALL_URL": w.stack.front_url,
                "LANDFALL_TOKEN": w.ci_token,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiting.stderr is not None
        seen: list[str] = []
        for line in waiting.stderr:  # "accepted", then the first answer of the long-poll
            seen.append(line)
            if "accepted" not in line:
                break  # it is long-polling now, on the gateway that is about to go
        w.stack.restart_service("webhook_gateway")
    finally:
        w.stack.restart_service("data_plane_agent")
    try:
        out, err = waiting.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        waiting.send_signal(signal.SIGKILL)
        raise
    err = "".join(seen) + err
    assert waiting.returncode == 0, (out, err)
    assert "retrying" in err, err  # it did meet the restart
    assert json.loads(out)["status"] == "succeeded"
    assert w.ci_token not in out + err


# --- keys and config: endpoints of issues 12 and 14 ----------------------------------------------


def test_keys_and_per_environment_config(world: World) -> None:
    """An org key is made once; `config set` changes only the fields it names (the secret goes in
    and never comes back), `config show` reads it, and a viewer key may read but not change it."""
    w = world
    key = as_json(landfall(w, "keys", "create", "robot", "--role", "viewer", "-o", "json"))
    assert key["key"].startswith("lfk_")
    w.secrets.append(key["key"])  # shown once, at creation: never again in any output

    where = (NAME, "--environment", "development")
    before = as_json(landfall(w, "config", "show", *where, "-o", "json"))
    secret = "s3cr3t-" + secrets.token_hex(8)
    w.secrets.append(secret)
    changed = as_json(
        landfall(
            w,
            *("config", "set", *where, "--replicas", "2", "--env", "LOG_LEVEL=debug"),
            *("--secret", f"DB_PASSWORD={secret}", "-o", "json"),
        )
    )
    assert changed["version"] > before["version"]
    assert changed["replicas"] == 2
    assert changed["env"] == {**before["env"], "LOG_LEVEL": "debug"}
    assert "DB_PASSWORD" in changed["secret_names"]

    other = "k3y-" + secrets.token_hex(8)
    again = as_json(
        landfall(
            w,
            *("config", "set", *where, "--env", "MORE=1", "--secret-stdin", "API_KEY", "-o", "json"),
            stdin=other + "\n",
        )
    )
    assert again["replicas"] == 2  # not named, so kept
    assert again["env"] == {**changed["env"], "MORE": "1"}
    assert {"DB_PASSWORD", "API_KEY"} <= set(again["secret_names"])  # one not named is kept

    shown = landfall(w, "config", "show", *where)
    assert "replicas" in shown.stdout
    assert "DB_PASSWORD" in shown.stdout
    assert "LOG_LEVEL=debug" in shown.stdout
    viewer = as_json(landfall(w, "config", "show", *where, "-o", "json", token=key["key"]))
    assert viewer["version"] == again["version"]
    refused = landfall(w, "config", "set", *where, "--replicas", "1", token=key["key"], check=3)
    assert "HTTP 403" in refused.stderr


# --- profiles ----------------------------------------------------------------------------------------


def test_login_saves_a_private_profile_and_flags_beat_env_beat_profile(world: World) -> None:
    w = world
    landfall(
        w,
        *("login", "--url", w.stack.front_url, "--token-stdin", "--profile", "work"),
        stdin=w.stack.admin_token + "\n",
        env={"LANDFALL_URL": "", "LANDFALL_TOKEN": ""},
    )
    path = w.home / ".config" / "landfall" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # the profile alone is enough
    only_profile = {"LANDFALL_URL": "", "LANDFALL_TOKEN": ""}
    assert NAME in landfall(w, "components", "list", env=only_profile).stdout
    assert NAME in landfall(w, "--profile", "work", "components", "list", env=only_profile).stdout
    # the environment beats the profile; a flag beats the environment
    (port,) = free_ports(1)
    landfall(w, "components", "list", env={"LANDFALL_URL": f"http://127.0.0.1:{port}"}, check=5)
    landfall(w, "components", "list", "--url", w.stack.front_url, env={"LANDFALL_URL": "http://127.0.0.1:1"})
    landfall(w, "components", "list", env={"LANDFALL_URL": "", "LANDFALL_TOKEN": "lfk_wrong"}, check=3)
    landfall(w, "components", "list", "--profile", "nope", check=2)


# --- the CI snippets, as CI would run them ------------------------------------------------------


def _served_snippets(w: World) -> dict[str, Any]:
    status, body = http(
        "GET",
        f"{w.stack.front_url}/v1/orgs/default/projects/default/components/{NAME}/ci-snippets",
        token=w.stack.admin_token,
    )
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def _run_lines(lines: list[str], env: dict[str, str]) -> None:
    for line in lines:
        proc = subprocess.run(["bash", "-ec", line], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
        assert env["LANDFALL_TOKEN"] not in proc.stdout + proc.stderr


def test_the_github_and_gitlab_snippets_deploy_with_the_cli(world: World) -> None:
    w = world
    snippets = _served_snippets(w)
    path = f"{LANDFALL.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LANDFALL_")}
    clean.update({"HOME": str(w.home), "XDG_CONFIG_HOME": str(w.home / "ci-config"), "PATH": path})

    github = {"${{ secrets.LANDFALL_CI_TOKEN }}": w.ci_token, "${{ github.sha }}": "1.1"}
    github.update({"${{ github.run_id }}": uuid.uuid4().hex, "${{ github.run_attempt }}": "1"})
    for step in yaml.safe_load(snippets["github_actions"]):
        env = dict(clean)
        for key, value in (step.get("env") or {}).items():
            for expr, real in github.items():
                value = value.replace(expr, real)
            env[key] = value
        env.setdefault("LANDFALL_TOKEN", w.ci_token)
        _run_lines([step["run"]], env)

    job = yaml.safe_load(snippets["gitlab_ci"])["landfall-deploy"]
    gitlab = {"$CI_COMMIT_SHA": "1.0", "$CI_JOB_ID": uuid.uuid4().hex}  # GitLab expands these itself
    env = {**clean, "LANDFALL_TOKEN": w.ci_token}  # a masked CI/CD variable
    for key, value in job["variables"].items():
        for expr, real in gitlab.items():
            value = value.replace(expr, real)
        env[key] = value
    _run_lines([*job["before_script"], *job["script"]], env)

    shown = as_json(landfall(w, "components", "show", NAME, "-o", "json"))
    assert shown["environments"]["development"]["digest"] == w.digests["1.0"]


def test_revoked_token_is_refused(world: World) -> None:
    w = world
    tokens = as_json(landfall(w, "tokens", "list", NAME, "-o", "json"))
    landfall(w, "tokens", "revoke", NAME, tokens["items"][0]["id"])
    landfall(w, "deploy", "--tag", "1.0", token=w.ci_token, check=3)
