"""The parties the orchestrator talks to over the network: the credentials service (RPC), the data
planes' agents (JetStream commands, their consumers and NATS users) and the gateways (notices)."""
