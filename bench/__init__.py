"""Landfall's benchmarks: `make bench` (or `python -m bench.run [--quick]`).

Everything runs on this machine against the real stack that the e2e tests use
(`libs.devstack.stack.Stack`: nats-server, PostgreSQL, OpenBao, docker-registry,
the sandbox Kubernetes API and the four services as separate processes). The
driver measures four things and writes them to `bench/results/`:

1. intake (`intake.py`): webhooks accepted per second by the gateway, beside a
   floor (`floor.py`) measured in the same run by the same load generator;
2. latency (`latency.py`): webhook POST -> `succeeded` as CI sees it through the
   long-poll, open loop at a fixed rate, broken down by hop from the timestamps
   the services record (`GET /v1/deployments/{id}` -> `timings`);
3. scale (`scale.py`): the same latency with 10, 100 and 1,000 data planes,
   whose agents run in one extra process (`fleet.py`);
4. footprint (`footprint.py`): resident memory of each service, idle and after.

`run.py` runs the parts in order (`PARTS`) on one stack (`stack.py`, which also
holds `Run`, what the parts share), with the sizes of `plan.py`; `report.py`
renders a result. `client.py` is the admin HTTP client that `make chaos` uses
too.

Ratios are always taken against numbers measured in the same run, never
against constants: a 2-core laptop and a CI runner differ, a ratio less so.
"""
