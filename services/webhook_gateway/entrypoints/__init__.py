"""How the gateway is called: HTTP (`routes`), broadcasts from other replicas and the orchestrator
(`broadcasts`), and its timer (`timers`)."""
