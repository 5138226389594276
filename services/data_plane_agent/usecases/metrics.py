"""The agent's Prometheus metrics, one set per registry (a fleet of agents in one process shares one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.commands = Counter(
            "landfall_agent_commands_total", "deploy commands handled", ["outcome"], registry=registry
        )
        self.reports = Counter(
            "landfall_agent_reports_total", "rollout reports stored", ["status"], registry=registry
        )
        self.watching = Gauge("landfall_agent_rollouts_watched", "rollouts being watched", registry=registry)
