"""The generator fingerprint: what determines an item's rows, besides the item. Pure.

Two runs with the same fingerprint produce the same rows for the same item, so a run may take
rows an earlier run stored (see reuse.py). It covers the generator (function or command, image
and its digest when known, the user's `generator.version`, the regenerate token), the
generator's env and the declared output columns. It leaves out what only changes how or where
rows are produced: shards, parallelism, concurrency, retries, cache, output location and format
(stored rows are format-neutral JSON; every format is written from them).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from datasetjob.redaction import env_value_digest
from datasetjob.spec.model import DatasetJobSpec, canonical_json

FINGERPRINT_VERSION = 1  # bump when the stored row format changes: old rows stop matching

_DIGEST_RE = re.compile(r"@(sha256:[0-9a-f]{64})$")


def image_digest(image: str | None, known: str | None = None) -> str | None:
    """The digest of the generator image: pinned in the reference (`repo@sha256:...`), or
    `known` (e.g. DSJ_IMAGE_DIGEST, set by a build that knows it); None if neither."""
    if image:
        pinned = _DIGEST_RE.search(image)
        if pinned:
            return pinned.group(1)
    return known or None


def fingerprint_inputs(
    spec: DatasetJobSpec, digest: str | None = None, regenerate_token: str | None = None
) -> dict[str, Any]:
    """Everything the fingerprint covers, as a JSON document (also stored for humans)."""
    gen = spec.generator
    return {
        "fingerprintVersion": FINGERPRINT_VERSION,
        "function": gen.function,
        "command": list(gen.command) if gen.command else None,
        "outputFile": gen.output_file,
        "workingDir": gen.working_dir,
        "image": gen.image,
        "imageDigest": digest,
        "version": gen.version,
        "regenerate": regenerate_token or None,
        # Env order counts: a later entry may refer to an earlier one with $(NAME). A literal
        # value counts by its hash: these inputs are stored (fingerprint.json) and it may be a key.
        "env": [_hashed_env(e) for e in gen.env],
        # A mapping: an API server sorts map keys, and column order does not change a row.
        "columns": dict(spec.combine.columns),
    }


def _hashed_env(entry: dict[str, Any]) -> dict[str, Any]:
    value = entry.get("value")
    return dict(entry, value=env_value_digest(value)) if isinstance(value, str) else dict(entry)


def generator_fingerprint(inputs: dict[str, Any]) -> str:
    """16 hex digits of the canonical inputs."""
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()[:16]


def item_digest(item: Any) -> str:
    """Guards against two different items that share an id (an idTemplate over some fields)."""
    text = str(item) if type(item) is int else canonical_json(item)  # the same text, cheaper (a range's items)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
