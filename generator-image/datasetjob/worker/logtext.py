"""Log lines that stay one line each: item ids and generator messages are data, and a newline or
terminal escape in them must not forge or hide lines in a shard log."""

from __future__ import annotations

import logging
import re

from datasetjob.redaction import redact_text

# C0 controls but tab, DEL, C1 controls (NEL among them), and the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def one_line(text: str) -> str:
    """`text` with every control character escaped (\\n, \\r, \\x1b, \\u2028 ...)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")

    return _CONTROL.sub(escape, text)


class OneLineFormatter(logging.Formatter):
    """Escapes (and redacts credentials in) the message of every record; tracebacks keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(redact_text(record.message))
        return super().formatMessage(record)
