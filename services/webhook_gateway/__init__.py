"""The webhook gateway: where CI pipelines tell Landfall about a new image.

Why it exists: CI holds a narrow credential (a CI token bound to one component)
and needs exactly two things: "deploy this image" and "how did it go". The
gateway checks the token and the image against the component, stores the
request on JetStream (`ImagePushed`) before it answers 202, and long-polls the
orchestrator's deployment changes so a pipeline can wait for the rollout.

It owns CI tokens (hashed, revocable at once on every replica), idempotency
keys, optional Standard Webhooks signatures and the ready-to-paste CI snippets.
Reading order: `app.py` (composition root) -> `entrypoints/` (routes,
broadcasts, timers) -> `usecases/` (authentication, intake, status, tokens,
signing, snippets) -> `store/` and `clients/` -> `domain/`. The README has the
module map and where the gateway differs from the shared shape.
"""
