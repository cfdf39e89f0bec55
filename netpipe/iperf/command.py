"""iperf3 command lines and version detection.

Every command is an argument list; nothing is ever passed through a shell.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from netpipe.errors import MeasurementError

_VERSION = re.compile(r"iperf (\d+\.\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class IperfOptions:
    """The iperf3 settings of one cell, resolved."""

    binary: str
    protocol: str
    duration_s: int
    omit_s: int
    mss: int | None
    udp_rate: str


def resolve_binary(binary: str) -> str:
    """Return the absolute path of the iperf3 executable, or raise."""
    path = shutil.which(binary)
    if path is None:
        raise MeasurementError(
            f"iperf3 executable {binary!r} (iperf.binary) was not found; install "
            "it (apt-get install iperf3) or set iperf.binary to its path."
        )
    return path


@cache
def iperf_version(binary: str) -> str:
    """Return the version iperf3 reports, e.g. '3.12'."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MeasurementError(f"cannot run {binary!r} --version: {exc}") from exc
    match = _VERSION.search(out.stdout + out.stderr)
    if match is None:
        raise MeasurementError(
            f"{binary!r} does not look like iperf3: --version printed "
            f"{(out.stdout + out.stderr).strip()[:200]!r}."
        )
    return match.group(1)


def server_command(binary: str, address: str, port: int) -> list[str]:
    """Return the command of a one-off server bound to ``address``."""
    return [binary, "-s", "-1", "-J", "-B", address, "-p", str(port)]


def client_command(opts: IperfOptions, server: str, port: int) -> list[str]:
    """Return the command of a client measuring towards ``server``."""
    argv = [
        opts.binary,
        "-c",
        server,
        "-p",
        str(port),
        "-t",
        str(opts.duration_s),
        "-O",
        str(opts.omit_s),
        "-J",
        "--get-server-output",
    ]
    if opts.protocol == "udp":
        argv += ["-u", "-b", opts.udp_rate]
    elif opts.mss is not None:
        argv += ["-M", str(opts.mss)]
    return argv
