"""Landfall on one machine, for tests and `make up` only (import-linter keeps services out).

- `servers`: the real NATS, PostgreSQL, OpenBao and registry servers, from pip and apt binaries;
- `sandbox`: a Kubernetes API with simulated controllers, for machines without a cluster;
- `stack`: all of it plus the four services as separate processes (`Stack`);
- `front_door`: one address for every service's endpoints (`LANDFALL_URL`), as an Ingress would;
- `supervisor`: `make up` / `make down` for a person at a terminal.
"""
