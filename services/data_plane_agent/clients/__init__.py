"""The parties the agent talks to over the network: Kubernetes (`kube.py`, the only
kubernetes_asyncio importer) and the orchestrator's enrollment endpoint (`orchestrator.py`).
NATS itself is `libs.runtime.bus`, used by the entry point and the reporter."""
