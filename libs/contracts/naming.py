"""Names of things in the data plane, computed the same way everywhere.

A namespace holds one org's project in one environment. Kubernetes allows 63
characters (DNS-1123 label); org, project and environment names may be 40
each, so long combinations are cut and given a hash suffix of the full
triple: deterministic, and two different triples never share a namespace.
The `-` joiner alone would be ambiguous (`a-b`+`c` vs `a`+`b-c`), which is
why the hash is over the triple with a separator that names cannot contain.
"""

from __future__ import annotations

import hashlib

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ORG = "landfall.dev/org"
LABEL_PROJECT = "landfall.dev/project"
LABEL_COMPONENT = "landfall.dev/component"
LABEL_ENVIRONMENT = "landfall.dev/environment"
# Which data plane wrote the object: an agent changes only objects carrying its own id here.
LABEL_DATAPLANE = "landfall.dev/dataplane"
ANNOTATION_DEPLOYMENT_ID = "landfall.dev/deployment-id"
ANNOTATION_SEQ = "landfall.dev/deployment-seq"
ANNOTATION_EXECUTION_ID = "landfall.dev/execution-id"


def namespace_for(org: str, project: str, environment: str) -> str:
    plain = f"lf-{org}-{project}-{environment}"
    digest = hashlib.sha256(f"{org}/{project}/{environment}".encode()).hexdigest()[:10]
    # Always suffix: keeps names unambiguous even when short (`a-b`/`c` vs `a`/`b-c`).
    head = plain[: 63 - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def labels_for(*, org: str, project: str, component: str, environment: str) -> dict[str, str]:
    return {
        MANAGED_BY: "landfall",
        LABEL_ORG: org,
        LABEL_PROJECT: project,
        LABEL_COMPONENT: component,
        LABEL_ENVIRONMENT: environment,
    }
