"""`make chaos`: crashes, restarts and hostile input against the real stack, measured.

Three parts, each with a short version that runs inside `make test`
(tests/e2e/test_chaos_quick.py, test_hostile_input.py, test_tenancy_and_secrets.py):

1. `crash`: CI webhooks over many components while `driver` SIGKILLs and
   restarts services and servers, then `reconcile` proves that nothing
   accepted was lost or applied twice and that no answer was a 500;
2. `hostile`: schemathesis against every service's `/openapi.json`;
3. `tenancy`: a generated matrix of cross-org and cross-component requests,
   and `secrets_scan`: every secret used, looked for in a PostgreSQL dump,
   every JetStream message and every log line.

Nothing here works around a failure: the driver behaves like CI (retries with
the same Idempotency-Key after a 503 or a dropped connection) and the checks
read the truth from the outside (the orchestrator's API, the Kubernetes API's
request log, the servers' own metrics).
"""
