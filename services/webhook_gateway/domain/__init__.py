"""The gateway's domain: records, pure rules and the errors use cases raise (no I/O, no HTTP).

Reading order: `records` (what is passed around), `errors` (refusals and how a
caller sees them), then the rules: `tokens` (CI token format), `images` (which
image a component may deploy, the Idempotency-Key shape), `signatures`
(Standard Webhooks) and `ratelimit` (per-token buckets).
"""
