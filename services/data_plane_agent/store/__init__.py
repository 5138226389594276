"""What the agent keeps on disk: `state.py`, its identity in agent.json (no PostgreSQL here)."""
