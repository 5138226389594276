"""The data-plane agent: Landfall's hands inside a user's Kubernetes cluster.

Why it exists: the control plane never holds cluster credentials and never opens a
connection into a user's network. The agent runs in the cluster, dials OUT to NATS,
takes its data plane's deploy commands from a durable JetStream consumer (so an agent
that was offline catches up, in order), writes the Kubernetes objects, and reports
what the cluster says about the rollout (kubectl's `rollout status` rules).

Read in this order (README.md has the map): `settings.py`; `domain/` (pure:
identity and sealed secrets, command -> objects, which command wins, object ->
verdict); `clients/` (Kubernetes, the orchestrator's enrollment endpoint);
`store/state.py` (agent.json); `usecases/` (enrollment, apply, remove, watch,
report, heartbeat); `entrypoints/consumer.py` (the JetStream consumer);
`agent.py` (one data plane's parts wired) and `app.py` (composition root).
"""
