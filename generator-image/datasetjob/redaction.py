"""Credentials in URLs (`redis://:password@host`, `https://token@host`,
`redis://host/0?password=...`) and literal generator env values are never written or printed:
every document, manifest, log line and message goes through here first. Pure.

Workers still need the real values: `split_credentials` returns what it hid, by field path, for
the runner to hand to its worker processes through their environment (never a file).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, TypeAlias

MASK = "***"
CREDENTIALS_ENV = "DSJ_SPEC_CREDENTIALS"

# scheme://userinfo@ — userinfo runs to the last '@' before the host's '/', '?', '#' or a space.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@")

# A query parameter that carries a secret: one of these names, alone or as the last word of a
# longer name (api_key, access_token, X-Amz-Signature), in any case.
_SECRET_PARAM = re.compile(
    r"(?P<name>(?:[A-Za-z0-9]*[_.-])*(?:password|passwd|pass|pwd|secret|token|key|access_key|secret_key|sig|signature))"
    r"=(?P<value>[^&#;\s'\"<>]*)",
    re.IGNORECASE,
)
# The query of a URL: from its '?' to the end of the URL (a space, a quote, '#' or '>').
_URL_QUERY = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>?#]*\?)(?P<query>[^\s'\"<>#]*)")
# A literal env value of the generator (generator.env[i].value), wherever the spec sits.
_ENV_VALUE_PATH = ("generator", "env", int, "value")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# Where a hidden string was (its keys and list indexes from the root) and the string itself.
Secret: TypeAlias = tuple[list[str | int], str]


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match.group("userinfo").partition(":")
    hidden = f"{user}:{MASK}" if colon else MASK  # a lone userinfo is often a token
    return f"{match.group('scheme')}{hidden}@"


def _mask_param(param: str) -> str:
    secret = _SECRET_PARAM.fullmatch(param)
    return f"{secret.group('name')}={MASK}" if secret and secret.group("value") else param


def _mask_query(match: re.Match[str]) -> str:
    params = re.split(r"([&;])", match.group("query"))  # separators kept, at odd indexes
    return match.group("head") + "".join(_mask_param(p) if i % 2 == 0 else p for i, p in enumerate(params))


def redact_text(text: str) -> str:
    """`text` with the password (or lone token) of every URL in it, and the value of every
    password-like query parameter (password, token, key, sig, ...), replaced by ***."""
    if "://" not in text:
        return text
    return _URL_QUERY.sub(_mask_query, _USERINFO.sub(_mask_userinfo, text))


def env_value_digest(value: str) -> str:
    """What is written instead of a literal env value: its hash, which still tells values apart."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _is_env_value(path: tuple[str | int, ...]) -> bool:
    tail = path[-len(_ENV_VALUE_PATH) :]
    return len(tail) == len(_ENV_VALUE_PATH) and all(
        isinstance(part, int) if want is int else part == want for part, want in zip(tail, _ENV_VALUE_PATH, strict=True)
    )


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with every string redacted."""
    return split_credentials(value)[0]


def split_credentials(value: Any, path: tuple[str | int, ...] = ()) -> tuple[Any, list[Secret]]:
    """(redacted copy, [(path, original string)] for every string that changed)."""
    if isinstance(value, str):
        env_literal = _is_env_value(path) and not _DIGEST.fullmatch(value)
        hidden = env_value_digest(value) if env_literal else redact_text(value)
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
