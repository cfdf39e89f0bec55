"""What this machine can do: drivers, iperf3, privileges, a Docker engine."""

from __future__ import annotations

import os
import platform
from typing import Any

from pyroute2 import IPRoute

import netpipe
from netpipe import records
from netpipe.config import DockerSettings
from netpipe.drivers import driver_sources, known_drivers
from netpipe.errors import NetpipeError
from netpipe.iperf.command import iperf_version, resolve_binary
from netpipe.naming import new_token


def doctor(
    iperf3: str = "iperf3",
    parent: str | None = None,
    docker: DockerSettings | None = None,
) -> dict[str, Any]:
    """Return this machine's capabilities as a dict."""
    binary = None
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
        "docker": docker_status(docker or DockerSettings(), binary),
    }


def docker_status(settings: DockerSettings, iperf3: str | None) -> dict[str, Any]:
    """Whether a Docker engine answers, its version, and the image cells would use."""
    from netpipe.backends import docker as docker_backend
    from netpipe.backends.image import image_files, image_tag

    status: dict[str, Any] = {
        "engine": docker_backend.engine_url(settings),
        "reachable": False,
        "version": None,
        "reason": None,
        "image": settings.image,
        "image_present": None,
    }
    if settings.image == "auto":
        if iperf3 is None:
            status["image"] = "auto: needs a usable iperf3 on this machine"
        else:
            try:
                status["image"] = image_tag(image_files(iperf3))
            except NetpipeError as exc:
                status["image"] = f"auto: {exc}"
    try:
        client = docker_backend.connect(settings, timeout=docker_backend.PING_TIMEOUT_S)
    except NetpipeError as exc:
        status["reason"] = str(exc)
        return status
    try:
        status["reachable"] = True
        status["version"] = client.version().get("Version")
        if ":" in status["image"] or settings.image != "auto":
            status["image_present"] = bool(client.api.images(name=status["image"]))
    finally:
        client.close()
    return status


def driver_verdicts(
    parent: str | None = None, topology: str = "local"
) -> dict[str, str | None]:
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
                    topology, 1
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
