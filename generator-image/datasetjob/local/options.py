"""Checks of `dsj run` options that name places (output, Redis), before anything starts. Pure."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

from datasetjob.errors import OptionError
from datasetjob.spec.model import redis_url_problem
from datasetjob.spec.schema import spec_schema


def check_output_option(value: str) -> str:
    """The output URI to use: file:// or s3://BUCKET[/prefix]; a plain path means file://."""
    parsed = urlparse(value)
    if not parsed.scheme:
        return f"file://{Path(value).resolve()}"
    if parsed.scheme == "s3" and not parsed.netloc:
        raise OptionError([f"--output: {value} names no bucket (use s3://BUCKET/prefix)"])
    if parsed.scheme not in ("file", "s3") or not (parsed.netloc or parsed.path.strip("/")):
        raise OptionError([f"--output: {value!r} is not a file:// or s3://BUCKET URI"])
    return value


def check_redis_url_option(value: str) -> None:
    """The same rules as spec.cache.redisUrl (the schema's pattern, then the URL's parts)."""
    pattern = spec_schema()["properties"]["cache"]["properties"]["redisUrl"]["pattern"]
    if not re.match(pattern, value):
        raise OptionError([f"--redis-url: {value!r} is not a Redis URL (use redis://, rediss:// or unix://)"])
    problem = redis_url_problem(value)
    if problem:
        raise OptionError([f"--redis-url: {problem}"])
