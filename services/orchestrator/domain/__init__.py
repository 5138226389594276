"""The orchestrator's pure logic: its records, their rules and the deployment state machine.

Nothing in this package does I/O or knows HTTP, so every rule can be tested
without a server. `records` holds what is stored, `rules` what may happen to
it (state machines, validation, images, pipeline order, enrollment), and
`commands` what is sent to a data plane's agent.
"""
