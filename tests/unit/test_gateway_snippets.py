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


def test_github_and_gitlab_snippets_install_the_cli_and_deploy_with_it() -> None:
    snippets = render_all(gateway_url="https://gw.example", repository="ghcr.io/acme/api")
    install, deploy = yaml.safe_load(snippets["github_actions"])
    assert install["shell"] == deploy["shell"] == "bash"
    assert "pipx install landfall" in install["run"]
    assert install["run"].startswith("command -v landfall")  # already installed: nothing to do
    assert deploy["run"] == 'landfall deploy --tag "$TAG" --wait'
    assert deploy["env"]["LANDFALL_TOKEN"] == "${{ secrets.LANDFALL_CI_TOKEN }}"
    assert deploy["env"]["LANDFALL_URL"] == "https://gw.example"
    assert deploy["env"]["TAG"] == "${{ github.sha }}"
    job = yaml.safe_load(snippets["gitlab_ci"])["landfall-deploy"]
    assert job["script"] == ['landfall deploy --tag "$TAG" --wait']
    assert "pip install" in job["before_script"][0]
    assert job["variables"]["TAG"] == "$CI_COMMIT_SHA"
    assert "LANDFALL_CI_TOKEN" not in job["variables"]
    assert "LANDFALL_TOKEN" not in job["variables"]  # a masked CI/CD variable, never in the file
    for text in (snippets["github_actions"], snippets["gitlab_ci"]):
        assert "deploy/ci/landfall-deploy.sh" in text  # the curl script, for runners without Python
    for line in (install["run"], deploy["run"], *job["before_script"], *job["script"]):
        subprocess.run(["bash", "-n"], input=line.encode(), check=True)


def test_the_shipped_script_is_the_served_one() -> None:
    assert (DEPLOY_CI / "landfall-deploy.sh").read_text() == deploy_script()
    package_script = DEPLOY_CI.parents[1] / "services" / "webhook_gateway" / "ci" / "landfall-deploy.sh"
    assert (DEPLOY_CI / "landfall-deploy.sh").resolve() == package_script  # one file, linked
    assert render_all(gateway_url="https://gw", repository="r.example/a")["curl"] == deploy_script(
        gateway_url="https://gw", image="r.example/a:1.0.0"
    )


def test_defaults_are_shell_safe() -> None:
    script = deploy_script(gateway_url='https://gw"; rm -rf / #', image="x$(id)")
    assert 'LANDFALL_GATEWAY_URL:-https://gw\\"; rm -rf / #}' in script
    assert "LANDFALL_IMAGE:-x\\$(id)}" in script
    subprocess.run(["bash", "-n"], input=script.encode(), check=True)
