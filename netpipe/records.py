"""Leftover records: what a cell run is about to create, written beforehand.

Before a cell creates anything it writes a record naming every namespace and
host link it will make; processes are added as they start. The record is
removed once teardown has finished. A record whose owner process is gone is a
leftover of an interrupted run, and :func:`cleanup` removes exactly what it
lists, so netpipe never deletes a namespace or link only because its name
looks like one of its own. Containers are the one thing also found another
way: by the label every netpipe container carries (``netpipe cleanup``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from netpipe.atomic import write_atomic
from netpipe.backends.netns import proc_start_time, remove_netns, stop_process
from netpipe.drivers.base import delete_link

log = logging.getLogger(__name__)


def state_dir() -> Path:
    """Return the folder of records and locks (NETPIPE_STATE_DIR overrides)."""
    return Path(os.environ.get("NETPIPE_STATE_DIR", "/run/netpipe"))


@dataclass
class Record:
    """What one cell run creates on this node."""

    token: str
    cell: str
    owner_pid: int = field(default_factory=os.getpid)
    owner_start: int | None = field(
        default_factory=lambda: proc_start_time(os.getpid())
    )
    created_at: float = field(default_factory=time.time)
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    restore_mtu: dict[str, int] = field(default_factory=dict)
    # Endpoint containers of a docker cell, and the engine they live on.
    containers: list[str] = field(default_factory=list)
    docker_url: str | None = None

    @property
    def path(self) -> Path:
        """Where this record is stored."""
        return state_dir() / "records" / f"{self.token}.json"

    def save(self) -> None:
        """Write the record atomically."""
        text = json.dumps(asdict(self))
        write_atomic(self.path, lambda tmp: tmp.write_text(text))

    def discard(self) -> None:
        """Remove the record once everything it lists is gone."""
        self.path.unlink(missing_ok=True)

    def owner_alive(self) -> bool:
        """Whether the process that wrote the record is still running."""
        return proc_start_time(self.owner_pid) == self.owner_start

    @classmethod
    def load(cls, path: Path) -> Record:
        """Read a record file."""
        data: dict[str, Any] = json.loads(path.read_text())
        data["processes"] = [tuple(p) for p in data.get("processes", [])]
        return cls(**data)


def records() -> list[Record]:
    """Return every record on this node, unreadable ones left out with a warning."""
    folder = state_dir() / "records"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found.append(Record.load(path))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable leftover record %s: %s", path, exc)
    return found


def remove_recorded(rec: Record, host: IPRoute) -> dict[str, list[str]]:
    """Remove everything ``rec`` lists that still exists; return what was removed."""
    removed: dict[str, list[str]] = {
        "processes": [],
        "netns": [],
        "containers": [],
        "links": [],
    }
    for pid, start in rec.processes:
        if stop_process(pid, start):
            removed["processes"].append(str(pid))
    for name in rec.netns:
        if remove_netns(name):
            removed["netns"].append(name)
    for name in rec.links:
        if delete_link(host, name):
            removed["links"].append(name)
    for name, mtu in rec.restore_mtu.items():
        idx = host.link_lookup(ifname=name)
        if idx:
            host.link("set", index=idx[0], mtu=mtu)
    if rec.containers:
        # Last: with no engine to ask, this raises and the record is kept.
        removed["containers"] = _remove_containers(rec)
    return removed


def _remove_containers(rec: Record) -> list[str]:
    """Remove the record's containers that still carry its run's label."""
    from netpipe.backends import docker as docker_backend

    with docker_backend.client_for_cleanup(rec.docker_url) as client:
        if client is None:
            log.warning(
                "run %s left containers %s, but no Docker engine answers at %s; "
                "its record is kept for a later cleanup",
                rec.token,
                rec.containers,
                rec.docker_url,
            )
            raise OSError(f"no Docker engine at {rec.docker_url}")
        ours = {
            c.name: c
            for c in docker_backend.labelled_containers(client)
            if c.labels.get(docker_backend.LABEL) == rec.token
        }
        removed = []
        for name in rec.containers:
            if name in ours:
                docker_backend.remove_container(ours[name])
                removed.append(name)
        return removed


def sweep_containers(live: set[str]) -> list[str]:
    """Remove containers with netpipe's label that no live run claims."""
    from netpipe.backends import docker as docker_backend

    urls = {docker_backend.engine_url(docker_backend.DockerSettings())}
    removed = []
    for url in sorted(urls):
        with docker_backend.client_for_cleanup(url) as client:
            if client is not None:
                removed += docker_backend.remove_unclaimed(client, live)
    return removed


def cleanup(*, containers: bool = False) -> list[dict[str, Any]]:
    """Remove the leftovers of every run whose owner is gone; return a report.

    With ``containers``, also remove every container that carries netpipe's
    label but belongs to no live run (the engine is the one DOCKER_HOST or
    the default socket names).
    """
    report: list[dict[str, Any]] = []
    live = set()
    with IPRoute() as host:
        for rec in records():
            if rec.owner_alive():
                live.add(rec.token)
                log.info(
                    "run %s (cell %s) is still running; left alone", rec.token, rec.cell
                )
                continue
            try:
                removed = remove_recorded(rec, host)
            except OSError as exc:
                log.warning("leftovers of run %s not all removed: %s", rec.token, exc)
                continue
            rec.discard()
            report.append({"token": rec.token, "cell": rec.cell, **removed})
            log.info(
                "removed leftovers of run %s (cell %s): %s",
                rec.token,
                rec.cell,
                removed,
            )
    if containers:
        swept = sweep_containers(live)
        if swept:
            report.append({"token": "", "cell": "", "containers": swept})
            log.info("removed labelled containers no run claims: %s", swept)
    return report
