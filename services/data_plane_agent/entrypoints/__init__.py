"""How work reaches the agent: `consumer.py` (its data plane's JetStream commands) and
`routes.py` (HTTP: health, readiness and metrics only; the agent serves no API)."""
