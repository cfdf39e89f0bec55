"""Turning SIGINT and SIGTERM into a request that a cell stops at a safe point.

A signal handler that raises wherever the main thread happens to be can land
inside pyroute2's event loop and leave a netlink socket half-read. Instead,
while a cell runs, both signals only set a flag; the runner and the waits it
does call :func:`check` between steps, which raises KeyboardInterrupt there,
and teardown then runs from a known state.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_received: list[int] = []
_current: list[Any] = [None]


def check() -> None:
    """Raise KeyboardInterrupt if SIGINT or SIGTERM arrived since the cell began."""
    if _received:
        raise KeyboardInterrupt(f"interrupted by signal {_received[0]}")


def requested() -> bool:
    """Whether a stop was requested."""
    return bool(_received)


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM request a stop instead of raising."""

    def note(signum: int, frame: Any) -> None:
        _received.append(signum)

    # Nested use (a benchmark around cells) keeps the outer handlers and flag.
    if signal.getsignal(signal.SIGINT) is not _current[0] or _current[0] is None:
        _received.clear()
        _current[0] = note
        previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    else:
        previous = {}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if previous:
            _current[0] = None
