"""Credentials in URLs (`redis://:password@host`, `https://token@host`) are never written or
printed: every document, manifest, log line and message goes through here first. Pure.

Workers still need the real values: `split_credentials` returns what it hid, by field path, for
the runner to hand to its worker processes through their environment (never a file).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeAlias

MASK = "***"
CREDENTIALS_ENV = "DSJ_SPEC_CREDENTIALS"

# scheme://userinfo@ — userinfo runs to the last '@' before the host's '/', '?', '#' or a space.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@")

# Where a hidden string was (its keys and list indexes from the root) and the string itself.
Secret: TypeAlias = tuple[list[str | int], str]


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    hidden = f"{user}:{MASK}" if colon else MASK  # a lone userinfo is often a token
    return f"{match.group('scheme')}{hidden}@"


def redact_text(text: str) -> str:
    """`text` with the password (or lone token) of every URL in it replaced by ***."""
    return _USERINFO.sub(_mask_userinfo, text)


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with every string redacted."""
    return split_credentials(value)[0]


def split_credentials(value: Any, path: tuple[str | int, ...] = ()) -> tuple[Any, list[Secret]]:
    """(redacted copy, [(path, original string)] for every string that changed)."""
    if isinstance(value, str):
        hidden = redact_text(value)
        return hidden, ([(list(path), value)] if hidden != value else [])
    if isinstance(value, dict):
        out, found = {}, []
        for key, child in value.items():
            out[key], more = split_credentials(child, path + (key,))
            found += more
        return out, found
    if isinstance(value, list):
        out_list, found = [], []
        for i, child in enumerate(value):
            hidden, more = split_credentials(child, path + (i,))
            out_list.append(hidden)
            found += more
        return out_list, found
    return value, []


def restore_credentials(value: Any, secrets: list[Secret]) -> Any:
    """The inverse of split_credentials on the redacted copy (in place; returns `value`)."""
    for path, original in secrets:
        target = value
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = original
    return value


def encode_secrets(secrets: list[Secret]) -> str:
    return json.dumps(secrets)


def decode_secrets(text: str | None) -> list[Secret]:
    return [(list(path), original) for path, original in json.loads(text)] if text else []
