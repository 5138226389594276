"""Where requests come in: the HTTP routes (`routes`) and the orchestrator's RPCs (`rpc`)."""
