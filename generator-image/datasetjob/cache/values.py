"""How cached values are stored: JSON text, never pickle, so a shared cache cannot run code in workers."""

from __future__ import annotations

import json
from typing import Any

from datasetjob.errors import CacheValueError


def encode_value(key: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise CacheValueError(f"cache key {key!r}: value is not JSON-serialisable ({exc})") from None


def decode_value(text: str) -> Any:
    return json.loads(text)
