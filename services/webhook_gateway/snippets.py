"""Ready-to-paste CI snippets: the `landfall` CLI for GitHub Actions and GitLab CI, a bash script beside.

One source each: the curl script is services/webhook_gateway/ci/landfall-deploy.sh (package
data; deploy/ci/landfall-deploy.sh is a link to it; `deploy_script()` serves it as `curl` with
the defaults filled in), and `github_actions()` / `gitlab_ci()` render the CLI jobs:
install the CLI (`pipx install landfall` / `pip install landfall`, skipped when `landfall` is
already on PATH), then `landfall deploy --tag "$TAG" --wait` with the component's CI token in
`LANDFALL_TOKEN`. deploy/ci/ holds the three with placeholders (a unit test keeps
those files in sync; nothing is copied by hand).

The CLI (libs/cli, CLI.md) follows the rollout through gateway restarts and exits 0 succeeded,
1 failed or superseded, 3 refused, 5 unavailable or out of time, 6 invalid.

What the script does, for runners without Python: POST the image with an Idempotency-Key that
stays the same across curl's retries (so a retried request never deploys twice), then
long-poll the status URL until the deployment is final. Exit codes: 0 succeeded, 1 failed or
superseded, 2 usage, 3 refused by the gateway or no final status in time. The token is passed
to curl through a file descriptor, never on the command line, so it does not show in `ps` or
in CI logs.
"""

from __future__ import annotations

import json
from importlib import resources

# The curl script, package data beside this module; deploy/ci/landfall-deploy.sh links to it.
_SCRIPT = (resources.files("services.webhook_gateway") / "ci" / "landfall-deploy.sh").read_text()


def _shell_default(value: str) -> str:
    """Make `value` safe inside a double-quoted ${...:-value} default."""
    for char in ("\\", '"', "$", "`"):
        value = value.replace(char, "\\" + char)
    return value


def _with_default(script: str, variable: str, value: str) -> str:
    """Fill the empty default of `${variable:-}` in `script` with `value`, shell-escaped."""
    return script.replace(f"${{{variable}:-}}", f"${{{variable}:-{_shell_default(value)}}}", 1)


def deploy_script(*, gateway_url: str = "", image: str = "") -> str:
    return _with_default(_with_default(_SCRIPT, "LANDFALL_GATEWAY_URL", gateway_url), "LANDFALL_IMAGE", image)


def _tag_of(image: str) -> str:
    """The tag part of `image` (`host/repo:TAG`), or `image` itself when it has none."""
    ref = image.split("@", 1)[0]
    if ref.rfind(":") > ref.rfind("/"):
        return ref.rsplit(":", 1)[1]
    return image


def github_actions(*, gateway_url: str, image: str) -> str:
    return (
        "# GitHub Actions steps: add them to your job after the step that pushes the image.\n"
        "# Store the component's CI token as the repository secret LANDFALL_CI_TOKEN.\n"
        "# `landfall deploy --wait` exits 0 once the rollout succeeded, 1 if it failed (reason printed).\n"
        "# No Python on the runner? The curl script does the same: deploy/ci/landfall-deploy.sh.\n"
        "- name: Install the Landfall CLI\n"
        "  shell: bash\n"
        "  run: command -v landfall >/dev/null || pipx install landfall\n"
        "- name: Deploy with Landfall\n"
        "  shell: bash\n"
        "  env:\n"
        f"    LANDFALL_URL: {json.dumps(gateway_url)}\n"
        "    LANDFALL_TOKEN: ${{ secrets.LANDFALL_CI_TOKEN }}\n"
        f"    TAG: {json.dumps(_tag_of(image))}\n"
        '    LANDFALL_IDEMPOTENCY_KEY: "github-${{ github.run_id }}-${{ github.run_attempt }}"\n'
        '  run: landfall deploy --tag "$TAG" --wait\n'
    )


def gitlab_ci(*, gateway_url: str, image: str) -> str:
    return (
        "# A GitLab CI job: add it to .gitlab-ci.yml; it runs after the jobs that push the image.\n"
        "# Store the component's CI token as a masked, protected CI/CD variable LANDFALL_TOKEN.\n"
        "# `landfall deploy --wait` exits 0 once the rollout succeeded, 1 if it failed (reason printed).\n"
        "# No Python in the image? The curl script does the same: deploy/ci/landfall-deploy.sh.\n"
        "landfall-deploy:\n"
        "  stage: deploy\n"
        "  image: python:3.12-slim\n"
        "  variables:\n"
        f"    LANDFALL_URL: {json.dumps(gateway_url)}\n"
        f"    TAG: {json.dumps(_tag_of(image))}\n"
        '    LANDFALL_IDEMPOTENCY_KEY: "gitlab-$CI_JOB_ID"\n'
        "  before_script:\n"
        "    - command -v landfall >/dev/null || pip install --quiet landfall\n"
        "  script:\n"
        '    - landfall deploy --tag "$TAG" --wait\n'
    )


GITHUB_IMAGE_TAG = "${{ github.sha }}"
GITLAB_IMAGE_TAG = "$CI_COMMIT_SHA"


def render_all(*, gateway_url: str, repository: str) -> dict[str, str]:
    """The three snippets for one component (`repository` is host/path without a tag)."""
    return {
        "curl": deploy_script(gateway_url=gateway_url, image=f"{repository}:1.0.0"),
        "github_actions": github_actions(gateway_url=gateway_url, image=f"{repository}:{GITHUB_IMAGE_TAG}"),
        "gitlab_ci": gitlab_ci(gateway_url=gateway_url, image=f"{repository}:{GITLAB_IMAGE_TAG}"),
    }


def deploy_files() -> dict[str, str]:
    """What deploy/ci/ holds: the same texts with placeholders."""
    gateway, repository = "https://landfall-gateway.example.com", "ghcr.io/acme/api"
    return {
        "landfall-deploy.sh": deploy_script(),
        "github-actions.yml": github_actions(gateway_url=gateway, image=f"{repository}:{GITHUB_IMAGE_TAG}"),
        "gitlab-ci.yml": gitlab_ci(gateway_url=gateway, image=f"{repository}:{GITLAB_IMAGE_TAG}"),
    }
