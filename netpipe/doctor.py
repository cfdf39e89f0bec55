"""What this machine can do: drivers, iperf3, privileges."""

from __future__ import annotations

import os
import platform
from typing import Any

from pyroute2 import IPRoute

import netpipe
from netpipe import records
from netpipe.drivers import known_drivers
from netpipe.errors import NetpipeError
from netpipe.iperf.command import iperf_version, resolve_binary
from netpipe.naming import new_token


def doctor(iperf3: str = "iperf3", parent: str | None = None) -> dict[str, Any]:
    """Return this machine's capabilities as a dict."""
    try:
        binary = resolve_binary(iperf3)
        iperf = f"{binary}, version {iperf_version(binary)}"
    except NetpipeError as exc:
        iperf = f"not usable: {exc}"

    drivers: dict[str, str | None] = {}
    if os.geteuid() != 0:
        drivers = {name: "needs root to check" for name in known_drivers()}
    else:
        token = new_token()
        rec = records.Record(token=token, cell="doctor", netns=[f"np{token}pr"])
        rec.save()
        try:
            with IPRoute() as host:
                for name, cls in sorted(known_drivers().items()):
                    drivers[name] = cls().unavailable_reason(
                        host, parent, f"np{token}pr"
                    )
        finally:
            rec.discard()
    return {
        "netpipe_version": netpipe.__version__,
        "kernel": platform.release(),
        "is_root": os.geteuid() == 0,
        "iperf3": iperf,
        "drivers": drivers,
    }
