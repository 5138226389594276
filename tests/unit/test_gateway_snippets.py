"""The CI snippets: deploy/ci/ matches what the gateway serves, and each snippet is valid as pasted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from services.webhook_gateway.snippets import deploy_files, deploy_script, render_all

DEPLOY_CI = Path(__file__).resolve().parents[2] / "deploy" / "ci"


def test_deploy_ci_files_are_what_the_gateway_renders() -> None:
    for name, text in deploy_files().items():
        assert (DEPLOY_CI / name).read_text() == text, (
            f"deploy/ci/{name} is stale: regenerate it from snippets.py"
        )
    assert (DEPLOY_CI / "landfall-deploy.sh").stat().st_mode & 0o111


def test_scripts_are_valid_bash() -> None:
    for script in (
        deploy_script(),
        render_all(gateway_url="https://gw.example", repository="ghcr.io/a/b")["curl"],
    ):
        subprocess.run(["bash", "-n"], input=script.encode(), check=True)
        assert "set -euo pipefail" in script


def test_github_and_gitlab_snippets_run_the_same_script() -> None:
    snippets = render_all(gateway_url="https://gw.example", repository="ghcr.io/acme/api")
    (step,) = yaml.safe_load(snippets["github_actions"])
    assert step["shell"] == "bash"
    assert step["run"] == deploy_script()
    assert step["env"]["LANDFALL_CI_TOKEN"] == "${{ secrets.LANDFALL_CI_TOKEN }}"
    job = yaml.safe_load(snippets["gitlab_ci"])["landfall-deploy"]
    script = job["script"][0]
    assert deploy_script() in script
    assert script.rstrip().endswith("bash /tmp/landfall-deploy.sh")
    assert "LANDFALL_CI_TOKEN" not in job["variables"]


def test_defaults_are_shell_safe() -> None:
    script = deploy_script(gateway_url='https://gw"; rm -rf / #', image="x$(id)")
    assert 'LANDFALL_GATEWAY_URL:-https://gw\\"; rm -rf / #}' in script
    assert "LANDFALL_IMAGE:-x\\$(id)}" in script
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)
