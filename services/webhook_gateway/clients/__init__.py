"""Other parties over the network: the orchestrator (NATS request-reply and its change notices)
and JetStream, where an accepted request is stored before the gateway answers 202."""
