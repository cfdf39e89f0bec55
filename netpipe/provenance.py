"""What a result must say about the machine it was measured on."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

import netpipe
from netpipe.iperf.command import iperf_version


def cpu_model() -> str | None:
    """Return the CPU model name from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def collect(binary: str) -> dict[str, Any]:
    """Return the provenance of this node for a cell measured with ``binary``."""
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "iperf3": binary,
        "iperf3_version": iperf_version(binary),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "netpipe_version": netpipe.__version__,
        "python": platform.python_version(),
        "is_root": os.geteuid() == 0,
    }
