"""Other parties over the network: container registries (HTTP) and the orchestrator (NATS)."""
