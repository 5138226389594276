"""The sandbox data plane: a Kubernetes API server for machines without a cluster.

`make up`, the e2e suite (which runs it as its own OS process, `python -m
libs.devstack.sandbox`) and the in-process integration tests need *a* Kubernetes API
for the data-plane agent to deploy into, and this machine has no Docker, kind or k3s.
`kmock`'s `KubernetesEmulator` keeps objects in memory and speaks the REST dialect, but
it is a test double, not an API server, and it differs from one exactly where the
agent's logic lives. `SandboxCluster` puts an aiohttp front before one emulator and
serves the object URLs itself; README.md lists the emulator quirks this papers over.

Layers, each importing only those above it:

- `values`, `errors`, `kinds`: JSON helpers, apiserver `Status` errors, resource kinds
  and the defaults the apiserver applies;
- `selectors`, `patches`: label/field selectors, the four patch flavours;
- `store`: resource versions, generations, events, watches, deletion;
- `controller`: simulated deployment/job controllers and kubelet;
- `handlers`, `front`, `kubeconfig`, `__main__`: the HTTP API, the server, the CLI.
"""

from libs.devstack.sandbox.controller import FailureRule
from libs.devstack.sandbox.front import DEPLOYMENT_ID_ANNOTATION, SandboxCluster, SandboxWrite
from libs.devstack.sandbox.kubeconfig import write_kubeconfig

__all__ = ["DEPLOYMENT_ID_ANNOTATION", "FailureRule", "SandboxCluster", "SandboxWrite", "write_kubeconfig"]
