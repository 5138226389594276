#!/usr/bin/env bash
# landfall-deploy.sh: deploy an image with Landfall from CI and wait for the rollout.
#
# usage: landfall-deploy.sh <gateway-url> <image>
#        (or set LANDFALL_GATEWAY_URL and LANDFALL_IMAGE)
# env:   LANDFALL_CI_TOKEN         the component's CI token (keep it in your CI's secret store)
#        LANDFALL_TIMEOUT          seconds to wait for a final status (default 1800)
#        LANDFALL_IDEMPOTENCY_KEY  optional; default: a random key, reused by every retry of this run
# exit:  0 succeeded, 1 failed or superseded, 2 usage, 3 refused or no final status in time
set -euo pipefail

gateway="${1:-${LANDFALL_GATEWAY_URL:-}}"
image="${2:-${LANDFALL_IMAGE:-}}"
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
