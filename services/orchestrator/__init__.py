"""The orchestrator: decides what runs where, and follows it until it runs.

It owns orgs, data planes (and their agents' enrollment), environments in
pipeline order, projects and components, and the deployments of component
images to environments as a state machine in PostgreSQL. Images accepted by
the webhook gateway arrive on JetStream; the orchestrator pins them by digest
(asking the credentials service), fetches a pull secret sealed to the target
data plane, and sends a `DeployCommand` to that data plane's agent, then
records what the agent reports. Reading order: `domain` (records and rules),
`store` (PostgreSQL), `clients` (credentials, agents, gateways), `usecases`
(catalog, intake, dispatch, reports, ...), `entrypoints` (HTTP, JetStream,
RPC), `app` (wiring). The module map is in README.md.
"""
