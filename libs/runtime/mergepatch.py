"""RFC 7386 JSON merge patch over plain JSON values.

One function for the three places that need the same rule: the agent's Kubernetes writes are
merge patches, the sandbox Kubernetes API applies them as a real API server does, and the
kustomize-subset renderer (deploy/kubernetes/render.py) applies an overlay's mapping patches.
What is subtle: lists are values like any other (a patch's list replaces the target's whole), and
the result shares nothing with either argument, so callers may change it in place.
"""

from __future__ import annotations

import copy
from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    """`target` with `patch` applied: mappings merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def changes(target: Any, patch: Any) -> bool:
    """Whether `merge_patch(target, patch)` would differ from `target`, without building it.

    What a writer asks before sending a patch it may skip: a mapping changes its target where a
    key it sets differs, or a key it nulls is there; any other value changes it unless equal.
    """
    if not isinstance(patch, dict):
        return bool(patch != target)
    if not isinstance(target, dict):
        return True
    for key, value in patch.items():
        if value is None:
            if key in target:
                return True
        elif key not in target or changes(target[key], value):
            return True
    return False
