"""What this machine can do: drivers, iperf3, privileges."""

from __future__ import annotations

import os
import platform
from typing import Any

from pyroute2 import IPRoute

import netpipe
from netpipe import records
from netpipe.drivers import driver_sources, known_drivers
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

    return {
        "netpipe_version": netpipe.__version__,
        "kernel": platform.release(),
        "is_root": os.geteuid() == 0,
        "iperf3": iperf,
        "drivers": driver_verdicts(parent),
    }


def driver_verdicts(parent: str | None = None) -> dict[str, str | None]:
    """Return, for every driver, None if this machine can run it, else why not."""
    verdicts: dict[str, str | None] = {}
    if os.geteuid() != 0:
        return {name: "needs root to check" for name in known_drivers()}
    token = new_token()
    rec = records.Record(token=token, cell="doctor", netns=[f"np{token}pr"])
    rec.save()
    try:
        with IPRoute() as host:
            for name, cls in sorted(known_drivers().items()):
                driver = cls()
                # The local topology is the one every machine has.
                verdicts[name] = driver.inapplicable_reason(
                    "local", 1
                ) or driver.unavailable_reason(host, parent, f"np{token}pr")
    finally:
        rec.discard()
    return verdicts


def driver_table(parent: str | None = None) -> list[dict[str, str | None]]:
    """Every known driver and broken plugin: name, source, summary, verdict."""
    drivers = known_drivers()
    verdicts = driver_verdicts(parent)
    rows = []
    for name, source in sorted(driver_sources().items()):
        cls = drivers.get(name)
        rows.append(
            {
                "name": name,
                "source": source,
                "summary": cls.summary if cls else None,
                "available": "yes"
                if name in verdicts and verdicts[name] is None
                else "no",
                "reason": verdicts.get(name) if cls else source,
            }
        )
    return rows
