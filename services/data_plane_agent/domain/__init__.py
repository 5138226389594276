"""What the agent knows without asking anyone: pure rules, no I/O.

- `identity`: who this agent is and how it opens a sealed pull secret (crypto only).
- `manifests`: a command in, the Kubernetes objects that realise it out.
- `ordering`: which of two commands wins (the seq rules), what applying decided.
- `rollout`: what an object and its Pods say about a rollout (kubectl's rules),
  and the rollout being watched.
"""
