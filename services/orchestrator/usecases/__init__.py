"""The orchestrator's use cases, one module each; they raise domain errors and know no HTTP.

Reading order: `catalog` and `dataplanes` (what exists), `intake` and
`deployments` (asking for a deployment), `recording` (what both share),
`dispatch` (the outbox: steps from a pending row to a command on JetStream),
`reports` (what agents say), `executions`, `teardowns`, `sweep`.
"""
