"""Ready-to-paste CI snippets: the `landfall` CLI for GitHub Actions and GitLab CI, a bash script beside.

One source each: `_SCRIPT` is the curl script (`deploy_script()`, served as `curl`, and
deploy/ci/landfall-deploy.sh), and `github_actions()` / `gitlab_ci()` render the CLI jobs:
install the CLI (`pipx install landfall` / `pip install landfall`, skipped when `landfall` is
already on PATH), then `landfall deploy --tag "$TAG" --wait` with the component's CI token in
`LANDFALL_TOKEN`. deploy/ci/ holds the three rendered with placeholders (a unit test keeps
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

_SCRIPT = r"""#!/usr/bin/env bash
# landfall-deploy.sh: deploy an image with Landfall from CI and wait for the rollout.
#
# usage: landfall-deploy.sh <gateway-url> <image>
#        (or set LANDFALL_GATEWAY_URL and LANDFALL_IMAGE)
# env:   LANDFALL_CI_TOKEN         the component's CI token (keep it in your CI's secret store)
#        LANDFALL_TIMEOUT          seconds to wait for a final status (default 1800)
#        LANDFALL_IDEMPOTENCY_KEY  optional; default: a random key, reused by every retry of this run
# exit:  0 succeeded, 1 failed or superseded, 2 usage, 3 refused or no final status in time
set -euo pipefail

gateway="${1:-${LANDFALL_GATEWAY_URL:-@@GATEWAY@@}}"
image="${2:-${LANDFALL_IMAGE:-@@IMAGE@@}}"
if [ -z "$gateway" ] || [ -z "$image" ]; then
  echo "usage: $0 <gateway-url> <image>  (or set LANDFALL_GATEWAY_URL and LANDFALL_IMAGE)" >&2
  exit 2
fi
if [ -z "${LANDFALL_CI_TOKEN:-}" ]; then
  echo "landfall: set LANDFALL_CI_TOKEN to the component's CI token (from your CI's secret store)" >&2
  exit 2
fi
gateway="${gateway%/}"
timeout="${LANDFALL_TIMEOUT:-1800}"
key="${LANDFALL_IDEMPOTENCY_KEY:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT

auth() { printf 'Authorization: Bearer %s\n' "$LANDFALL_CI_TOKEN"; }
field() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$tmp" | head -n 1; }

image_json="${image//\\/\\\\}"
image_json="${image_json//\"/\\\"}"
code="$(curl -sS -o "$tmp" -w '%{http_code}' --retry 5 --retry-max-time 120 --max-time 30 \
  -X POST -H @<(auth) -H 'Content-Type: application/json' -H "Idempotency-Key: $key" \
  --data "{\"image\":\"$image_json\"}" "$gateway/v1/webhooks/deploy")" || true
if [ "$code" != 202 ]; then
  echo "landfall: the gateway did not accept $image (HTTP $code): $(cat "$tmp" 2>/dev/null || true)" >&2
  exit 3
fi
deployment_id="$(field deployment_id)"
status_url="$(field status_url)"
case "$status_url" in /*) status_url="$gateway$status_url" ;; esac
echo "landfall: accepted $image as $deployment_id; waiting for the rollout"

deadline=$(( $(date +%s) + timeout ))
last=""
while :; do
  now="$(date +%s)"
  if [ "$now" -ge "$deadline" ]; then
    echo "landfall: no final status for $deployment_id after ${timeout}s (last: ${last:-unknown})" >&2
    exit 3
  fi
  wait=$(( deadline - now ))
  if [ "$wait" -gt 60 ]; then wait=60; fi
  code="$(curl -sS -o "$tmp" -w '%{http_code}' --max-time $(( wait + 30 )) \
    -H @<(auth) "$status_url?wait=$wait")" || true
  case "$code" in
    200) ;;
    000|429|5??) echo "landfall: status unavailable (HTTP $code); retrying" >&2; sleep 2; continue ;;
    *) echo "landfall: cannot read the status (HTTP $code): $(cat "$tmp")" >&2; exit 3 ;;
  esac
  status="$(field status)"
  if [ "$status" != "$last" ]; then
    echo "landfall: $deployment_id is $status"
    last="$status"
  fi
  case "$status" in
    succeeded) exit 0 ;;
    failed|superseded) echo "landfall: deployment $status: $(field reason)" >&2; exit 1 ;;
  esac
done
"""


def _shell_default(value: str) -> str:
    """Make `value` safe inside a double-quoted ${...:-value} default."""
    for char in ("\\", '"', "$", "`"):
        value = value.replace(char, "\\" + char)
    return value


def deploy_script(*, gateway_url: str = "", image: str = "") -> str:
    return _SCRIPT.replace("@@GATEWAY@@", _shell_default(gateway_url)).replace(
        "@@IMAGE@@", _shell_default(image)
    )


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
