"""Landfall's message contracts: the only thing services share.

Every bus subject, JetStream stream and message body lives here, versioned
(`landfall.v1.…`, `schema_version`), the way Flux keeps its API types in
`api/v1`. A service imports these models and never another service.
"""
