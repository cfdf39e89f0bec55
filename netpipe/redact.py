"""Keeping secrets out of what netpipe writes: results, logs and the report.

A config may one day carry a key passphrase or a password (for SSH to a
node). Whatever netpipe shows of a config goes through :func:`redact`, which
replaces the value of every key that names a secret; paths to key files are
not secrets and stay.
"""

from __future__ import annotations

import re
from typing import Any

SHOWN = "(redacted)"
_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?$|secret|api[_-]?key$|credential|^token$|private[_-]?key$",
    re.IGNORECASE,
)


def is_secret_key(key: object) -> bool:
    """Whether a mapping key names a secret value."""
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def redact(value: Any) -> Any:
    """Return a copy of ``value`` with every secret-named key's value hidden."""
    if isinstance(value, dict):
        return {
            k: (SHOWN if is_secret_key(k) and v is not None else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value
