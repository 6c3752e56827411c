"""Start-document metadata that clients may give: checked the same way at put and at Start.

Its own module so that the CA side can check a Metadata put without importing the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .registry import ArgumentError

#: Metadata keys the RunEngine sets itself; a client may not override them.
RESERVED_METADATA_KEYS = frozenset({"uid", "time", "scan_id", "plan_name", "plan_type"})


def validate_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse metadata that would clash with what the RunEngine sets itself."""
    if not isinstance(metadata, Mapping):
        raise ArgumentError("Metadata must be a JSON object")
    clash = sorted(RESERVED_METADATA_KEYS.intersection(metadata))
    if clash:
        raise ArgumentError(f"Metadata may not set {', '.join(clash)} (set by the RunEngine)")
    return dict(metadata)
