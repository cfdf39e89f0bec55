"""What both benchmarks share: preflight checks, medians, output, safety.

Every benchmark creates only what a netpipe cell would (names ``np<token>...``,
addresses from 198.18.0.0/15), writes a netpipe leftover record before it
creates anything, and removes what the record lists when it ends, fails or is
interrupted, so ``netpipe cleanup`` can also remove what a killed run left.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyroute2
from pyroute2 import IPRoute

import netpipe
from netpipe import records
from netpipe.backends.netns import NETNS_DIR
from netpipe.lock import testbed_lock

log = logging.getLogger(__name__)

SYS_NET = "/sys/class/net"
BUSY_S = 0.05  # a lock taken later than this was held by someone else

# How often a measurement had to wait for the testbed: another netpipe run was
# going on, so the machine was busier than an idle one around the figures.
busy_waits = 0


class BenchmarkError(Exception):
    """A benchmark could not run or a step of it failed."""


def preflight(tools: Sequence[str]) -> None:
    """Stop with a clear message unless run as root with ``tools`` on PATH."""
    if os.geteuid() != 0:
        raise SystemExit(
            "benchmarks create network namespaces and links: run them as root."
        )
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"missing tools: {', '.join(missing)}; install them "
            "(apt-get install iproute2 iperf3) and run again."
        )


def setup_logging(verbose: bool) -> None:
    """Log progress to stderr: steps at INFO, netpipe's own lines with -v."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        logging.getLogger("netpipe").setLevel(logging.WARNING)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Return the median, minimum, maximum and every value of a series."""
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "runs": [round(v, 4) for v in values],
    }


def verdict(ok: bool) -> str:
    """Return PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    """Write ``data`` as indented JSON to ``path``, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def busy_note() -> str | None:
    """Say whether other netpipe runs shared the machine during the benchmark."""
    if not busy_waits:
        return None
    return (
        f"the testbed was busy {busy_waits} times (another netpipe run, such as a "
        "sweep, was going on); the benchmark waited each time, but the figures "
        "are noisier than on an idle machine."
    )


def machine() -> dict[str, Any]:
    """Describe what the figures were measured on."""
    ip = subprocess.run(["ip", "-V"], capture_output=True, text=True, check=False)
    return {
        "netpipe_commit": _commit(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "pyroute2": pyroute2.__version__,
        "iproute2": ip.stdout.strip(),
    }


_QUIET: dict[str, Any] = {"capture_output": True, "text": True, "check": False}


def _commit() -> str | None:
    """Return the commit of the netpipe source measured, '+dirty' if edited."""
    repo = Path(netpipe.__file__).resolve().parent.parent
    git = ["git", "-C", str(repo)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], **_QUIET)
    if head.returncode != 0:
        return None
    dirty = subprocess.run([*git, "status", "--porcelain", "netpipe"], **_QUIET)
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run(argv: Sequence[str], *, timeout: float = 60) -> str:
    """Run a command (never through a shell); return stdout or raise with stderr."""
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise BenchmarkError(
            f"{' '.join(argv)} exited with {done.returncode}: {done.stderr.strip()}"
        )
    return done.stdout


@contextmanager
def testbed(what: str) -> Iterator[None]:
    """Hold netpipe's testbed lock, so that no cell runs beside a measurement."""
    global busy_waits
    t = time.monotonic()
    with testbed_lock(f"benchmark {what}"):
        if time.monotonic() - t > BUSY_S:
            busy_waits += 1
        yield


@contextmanager
def recorded(rec: records.Record) -> Iterator[records.Record]:
    """Save ``rec`` now; on leaving, remove whatever it lists that still exists."""
    rec.save()
    try:
        yield rec
    finally:
        if rec.path.exists():
            with IPRoute() as host:
                removed = records.remove_recorded(rec, host)
            rec.discard()
            if any(removed.values()):
                log.warning("removed what run %s left: %s", rec.token, removed)


def leftovers(rec: records.Record) -> list[str]:
    """Return the namespaces and links of ``rec`` that still exist."""
    found = [n for n in rec.netns if os.path.exists(os.path.join(NETNS_DIR, n))]
    found += [n for n in rec.links if os.path.exists(os.path.join(SYS_NET, n))]
    return found


def run_main(main: Callable[[], int]) -> None:
    """Run a benchmark's main; turn its known failures into one-line exits."""
    try:
        sys.exit(main())
    except BenchmarkError as exc:
        sys.exit(f"benchmark failed: {exc}")
    except KeyboardInterrupt:
        sys.exit("interrupted; everything created was removed.")
