"""What the agent does, one module per use case, below the JetStream entry point.

`enrollment` (who am I), `apply` (a deploy command to objects), `remove` (a
deleted component), `watch` (rollouts to a terminal verdict), `report` (the
durable report queue), `heartbeat`; `namespaces` and `pacing` are shared by
apply and remove, `metrics` by all. They raise or return domain outcomes and
never see a NATS message: the entry point settles messages.
"""
