"""Splitting one netpipe provisioning run into phases, with its requests.

While a :class:`Recorder` is active, netpipe's own functions (namespace
create and remove, the driver's provision and teardown, its in-namespace
configuration, the MTU check, the teardown's wait) and pyroute2's ``link``,
``addr`` and socket opening are wrapped so that each second of wall-clock
time and each netlink request is charged to the innermost phase running.
Nothing is reimplemented: the run is the same code path as the timed ones,
and everything is unwrapped when the block ends.
"""

from __future__ import annotations

import functools
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from pyroute2 import IPRoute
from pyroute2.iproute.linux import RTNL_API

from netpipe import runner
from netpipe.backends.netns import NetnsBackend
from netpipe.drivers import Driver

OUTSIDE = "other (backend, record, signals)"


class Recorder:
    """Charges time and netlink requests to the innermost netpipe phase."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.seconds: dict[str, float] = defaultdict(float)
        self.requests: dict[str, Counter[str]] = defaultdict(Counter)
        self._stack = [OUTSIDE]
        self._mark = 0.0
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> Recorder:
        driver_module = sys.modules[type(self.driver).__module__]
        self._patch(NetnsBackend, "create", "namespace create")
        self._patch(driver_module, "configure_endpoint", "in-namespace configure")
        self._patch(self.driver, "provision", "driver provision (host side)")
        self._patch(runner, "_check_mtu", "MTU check")
        self._patch(runner, "_teardown", "link-gone wait")
        self._patch(NetnsBackend, "remove", "namespace remove")
        self._patch(NetnsBackend, "close", "namespace socket close")
        self._patch(self.driver, "teardown", "driver teardown (host links)")
        self._count(RTNL_API, "link")
        self._count(RTNL_API, "addr")
        self._count_sockets()
        self._mark = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._charge()
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    def report(self, total: float) -> dict[str, Any]:
        """Return seconds and requests per phase, and the timed total."""
        order = sorted(self.seconds, key=lambda p: -self.seconds[p])
        return {
            "total_s": round(total, 4),
            "phases_s": {p: round(self.seconds[p], 4) for p in order},
            "requests": {p: dict(self.requests[p]) for p in order},
        }

    def _charge(self) -> None:
        now = time.perf_counter()
        self.seconds[self._stack[-1]] += now - self._mark
        self._mark = now

    def _patch(self, owner: Any, name: str, phase: str) -> None:
        """Replace ``owner.name`` with a wrapper that runs under ``phase``."""
        original = getattr(owner, name)
        had_own = name in vars(owner)
        saved = vars(owner).get(name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._charge()
            self._stack.append(phase)
            try:
                return original(*args, **kwargs)
            finally:
                self._charge()
                self._stack.pop()

        setattr(owner, name, wrapper)

        def undo() -> None:
            if had_own:
                setattr(owner, name, saved)
            else:
                delattr(owner, name)

        self._undo.append(undo)

    def _count(self, owner: Any, name: str) -> None:
        """Count calls of an async pyroute2 method by command, per phase."""
        original = getattr(owner, name)

        @functools.wraps(original)
        async def counted(api: Any, command: str, *args: Any, **kwargs: Any) -> Any:
            self.requests[self._stack[-1]][f"{name} {command}"] += 1
            return await original(api, command, *args, **kwargs)

        setattr(owner, name, counted)
        self._undo.append(lambda: setattr(owner, name, original))

    def _count_sockets(self) -> None:
        original = IPRoute.__init__

        @functools.wraps(original)
        def counted(sock: Any, *args: Any, **kwargs: Any) -> None:
            self.requests[self._stack[-1]]["socket open"] += 1
            original(sock, *args, **kwargs)

        IPRoute.__init__ = counted  # type: ignore[method-assign]
        self._undo.append(lambda: setattr(IPRoute, "__init__", original))
