"""The value of a record on the worker's internal topics (`ioc.internal.*`).

A JSON array of entries, compact, in UTF-8 (not \\u escapes), with no NaN or Infinity (a
reader in another language must be able to parse it).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["encode_entries"]


def encode_entries(entries: list[dict[str, Any]]) -> bytes:
    """One internal record's value; ValueError for a NaN or infinite number."""
    return json.dumps(entries, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
