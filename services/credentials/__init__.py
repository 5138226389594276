"""The credentials service: container registries and the secrets to pull from them.

Why it exists: registry passwords must live in exactly one place (Vault) and be
handled by exactly one service. Users register a registry once per org (anonymous,
username/password, a pasted Docker config, or a cloud vendor's IAM identity);
PostgreSQL keeps only metadata and an audit trail. The orchestrator asks this
service, over NATS request-reply, for a registry's host, for the digest a tag
points to, and for a pull secret sealed to one data plane's public key: no other
service ever sees a password in clear text.

What is subtle: PostgreSQL and Vault are written together without a distributed
transaction. The row is written in a transaction, Vault is written before the
commit, and the row remembers which Vault *version* is current: a failed commit
leaves the row pointing at the previous version (and the new one is destroyed),
a failed Vault write rolls the row back. See `usecases.registries`.

Reading order: `domain` (records, rules, errors, sealing), `usecases` (catalog,
registries, checks, pulls), `store` (PostgreSQL tables, Vault secrets),
`clients` (registries over HTTP, the orchestrator over NATS), then the edges
`schemas`, `entrypoints.routes`, `entrypoints.rpc` and `app`.
"""
