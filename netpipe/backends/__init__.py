"""Backends make the endpoints that stand in for containers.

``netns``: every endpoint is a bare network namespace. ``docker``: every
endpoint is a Docker container with no network of its own, whose namespace
is bound under ``/run/netns`` so that drivers treat both alike. A backend
creates and removes endpoints, hands out a netlink socket inside each one,
and starts processes in them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pyroute2 import IPRoute

from netpipe.backends.netns import NetnsBackend, Process


class Proc(Protocol):
    """A process started in an endpoint: forked by netpipe, or an engine's exec."""

    argv: list[str]
    netns: str
    returncode: int | None
    recordable: bool

    @property
    def pid(self) -> int:
        """Its process ID on this machine."""

    @property
    def ns_pid(self) -> int:
        """A process in the same network namespace (for /proc/PID/net)."""

    def poll(self) -> int | None:
        """The exit code once ended, else None."""

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the exit code."""

    def output(self) -> tuple[str, str]:
        """What it printed on stdout and stderr."""

    def kill(self) -> None:
        """Kill it if it still runs."""

    def close(self) -> None:
        """Kill it and release its resources."""


class Backend(Protocol):
    """What drivers, the runner and the iperf3 session ask of a backend."""

    name: str
    sockets: dict[str, IPRoute]

    def create(self, name: str) -> IPRoute:
        """Create a bare namespace and return a socket inside it."""

    def create_endpoints(
        self, names: Sequence[str], *, host_network: bool = False
    ) -> None:
        """Create every endpoint; ``sockets`` then holds one per endpoint."""

    def remove(self, name: str) -> None:
        """Remove one namespace or endpoint, if present."""

    def remove_all(self, names: Sequence[str]) -> None:
        """Remove several."""

    def close(self) -> None:
        """Release every socket and handle."""

    def gate(self) -> Any:
        """A gate that holds started clients until it opens."""

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        gate: Any = None,
        host_network: bool = False,
    ) -> Proc:
        """Start ``argv`` in endpoint ``name``; return a process handle."""


__all__ = ["Backend", "NetnsBackend", "Proc", "Process"]
