"""The testbed lock: one measurement at a time on a node.

An exclusive ``flock`` on a file in the state folder. The kernel drops it when
the holding process dies, however it dies, so a killed sweep never leaves
the testbed locked.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from netpipe import interrupt
from netpipe.errors import NodeError
from netpipe.records import state_dir

log = logging.getLogger(__name__)


NO_WAIT_ENV = "NETPIPE_NO_WAIT"


def wait_wanted() -> bool:
    """Whether a busy testbed is waited for: yes, unless NETPIPE_NO_WAIT is set."""
    return os.environ.get(NO_WAIT_ENV, "").strip().lower() in ("", "0", "no", "false")


@contextmanager
def testbed_lock(holder: str, *, wait: bool | None = None) -> Iterator[None]:
    """Hold the testbed for ``holder`` (a cell label); wait for it if busy.

    ``wait`` None follows the environment (:func:`wait_wanted`), so that a
    sweep run as ``NETPIPE_NO_WAIT=1 snakemake ...`` refuses rather than waits.
    """
    if wait is None:
        wait = wait_wanted()
    path = state_dir() / "testbed.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_holder(fd)
            if not wait:
                raise NodeError(
                    f"the testbed is busy with {other}, and {NO_WAIT_ENV} (or "
                    "--no-wait) says not to wait; let it finish, or run again "
                    f"without {NO_WAIT_ENV}=1 / --no-wait to wait for it."
                ) from None
            log.warning("waiting for the testbed: it is busy with %s", other)
            t = time.monotonic()
            # Poll rather than block, so that Ctrl-C stops a waiting cell.
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    interrupt.check()
                    time.sleep(0.1)
            log.info("got the testbed after %.1f s", time.monotonic() - t)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "cell": holder}).encode(), 0)
        yield
    finally:
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"cell {info.get('cell')} (pid {info.get('pid')})"
    except ValueError:
        return "another measurement"
