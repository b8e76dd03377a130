"""Credentials in URLs never leave the process; log lines stay one line each."""

import pytest

from datasetjob.redaction import (
    decode_secrets,
    encode_secrets,
    redact,
    redact_text,
    restore_credentials,
    split_credentials,
)
from datasetjob.worker.logtext import one_line


@pytest.mark.parametrize(
    "text, shown",
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://user:pw@h:6380/1?ssl=1", "rediss://user:***@h:6380/1?ssl=1"),
        ("redis://:p@ss@h/0", "redis://:***@h/0"),
        ("https://token@example.org/x", "https://***@example.org/x"),
        ("cannot reach http://u:pw@h:9000 (timeout)", "cannot reach http://u:***@h:9000 (timeout)"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("mail me@example.org", "mail me@example.org"),
    ],
)
def test_redact_text_hides_passwords_and_tokens(text, shown):
    assert redact_text(text) == shown


def test_split_and_restore_round_trip_a_document():
    doc = {"spec": {"cache": {"redisUrl": "redis://:pw@h/0"}, "items": {"values": ["a", "x://t@h"]}}}
    hidden, secrets = split_credentials(doc)
    assert "pw" not in str(hidden) and "x://***@h" in str(hidden)
    assert restore_credentials(hidden, decode_secrets(encode_secrets(secrets))) == doc
    assert redact(doc) != doc and doc["spec"]["cache"]["redisUrl"] == "redis://:pw@h/0"  # a copy


def test_one_line_escapes_line_breaks_and_terminal_controls():
    assert one_line("a\nb\r\x1b[2K\u2028c\td") == "a\\nb\\r\\x1b[2K\\u2028c\td"
    assert one_line("Zürich ✓") == "Zürich ✓"
