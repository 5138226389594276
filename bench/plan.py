"""How big a benchmark run is: `make bench`'s sizes are the defaults, `--quick` the smoke test's.

The quick sizes only prove that every part still runs end to end (tests/e2e/
test_bench_smoke.py asserts no speed); the full sizes are the ones the README's
figures and targets speak of. `--planes` replaces `scale_planes` only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    quick: bool = False
    intake_seconds: float = 10
    intake_connections: int = 32
    wrk_threads: int = 2
    latency_deploys: int = 1000
    latency_rate: float = 50
    latency_components: int = 100
    unloaded_deploys: int = 200
    unloaded_rate: float = 10
    scale_planes: tuple[int, ...] = (10, 100, 1000)
    scale_deploys: int = 1000
    scale_min_components: int = 100
    access_requests: int = 2000  # each: with the org key, with the platform token


FULL = Plan()
QUICK = Plan(
    quick=True,
    intake_seconds=1,
    intake_connections=4,
    wrk_threads=1,
    latency_deploys=20,
    latency_rate=20,
    # One deploy per component: at 20/s a component reused every 200 ms can be superseded by its own
    # next deploy on a loaded machine, which the smoke test would count as a failure.
    latency_components=20,
    unloaded_deploys=5,
    unloaded_rate=10,
    scale_planes=(2, 4),
    scale_deploys=12,
    scale_min_components=12,
    access_requests=100,
)
