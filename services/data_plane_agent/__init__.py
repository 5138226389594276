"""The data-plane agent: Landfall's hands inside a user's Kubernetes cluster.

Why it exists: the control plane never holds cluster credentials and never opens a
connection into a user's network. The agent runs in the cluster, dials OUT to NATS,
takes its data plane's deploy commands from a durable JetStream consumer (so an agent
that was offline catches up, in order), writes the Kubernetes objects, and reports
what the cluster says about the rollout (kubectl's `rollout status` rules).

Read in this order: `settings.py`, `identity.py` (enrollment, the X25519 key that
opens sealed pull secrets), `manifests.py` (pure: command -> objects), `rollout.py`
(pure: object -> verdict), `kube.py` (the only module that talks to Kubernetes),
`agent.py` (the consumer, the ordering and supersession rules, watches, reports),
`app.py` (composition root) and `fleet.py` (many agents in one process, for
benchmarks).
"""
