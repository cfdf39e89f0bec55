"""Endpoints as Docker containers, through the Docker SDK and pyroute2.

What the study did with pipework, done without a shell: each endpoint is a
container started with no network (``--net=none``), named like the netns
backend's namespace and labelled as netpipe's. Its network namespace, found
from the container's PID, is bind-mounted under ``/run/netns`` with that same
name, so every driver plugs and configures it through pyroute2 exactly as it
does a bare namespace. iperf3 runs inside the container through the engine's
exec, so it also pays for what a container adds: its own mount, PID and IPC
namespaces, cgroup, seccomp filter and capability set.

The host driver's endpoints are containers on the host's network
(``--network host``); their bare namespaces, which only hold an unused np0,
stay plain namespaces.

Every container is named in the cell's record before it is created and
removed with the cell in every outcome; ``netpipe cleanup`` also removes any
container that carries netpipe's label but no live run's record.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from pyroute2 import IPRoute, netns

from netpipe.backends.image import ensure_host_image
from netpipe.backends.netns import NetnsBackend, remove_netns, wait_for_exit
from netpipe.config import DockerSettings
from netpipe.errors import MeasurementError, ProvisionError
from netpipe.naming import check_own_name

log = logging.getLogger(__name__)

LABEL = "io.netpipe.token"
"""Every container netpipe starts carries this label, set to its run's token."""
CELL_LABEL = "io.netpipe.cell"
PING_TIMEOUT_S = 5.0
T = TypeVar("T")


def engine_url(settings: DockerSettings) -> str:
    """Where the engine is looked for: docker.url, DOCKER_HOST, the default."""
    return (
        settings.url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    )


class EngineMissing(ProvisionError):
    """Nothing listens at the engine's address: the docker cells are skipped."""


def connect(settings: DockerSettings, *, timeout: float | None = None) -> Any:
    """Return a Docker client for the engine, or raise with what to do.

    Nothing listening at the address raises :class:`EngineMissing`; an engine
    that takes the connection but does not answer within the timeout, or
    answers with an error, raises :class:`ProvisionError`.
    """
    import docker
    import requests
    from docker.errors import DockerException

    url = engine_url(settings)
    wait = timeout or settings.timeout_s
    remedy = (
        "Start one (see README, 'Docker backend') or point docker.url or "
        "DOCKER_HOST at it."
    )
    if url.startswith("unix://"):
        # The SDK leaks its socket when a connect fails; try it here first.
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(wait)
            try:
                probe.connect(url.removeprefix("unix://"))
            except OSError as exc:
                raise EngineMissing(
                    f"no Docker engine answers at {url}: {exc.strerror or exc}. "
                    f"{remedy}"
                ) from None
    try:
        client = docker.DockerClient(
            base_url=url, timeout=max(1, math.ceil(wait)), max_pool_size=64
        )
        client.ping()
    except DockerException as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, requests.exceptions.ReadTimeout):
            raise ProvisionError(
                f"the Docker engine at {url} took the connection but did not "
                f"answer within {wait:g} s (docker.timeout_s); is dockerd stuck?"
            ) from None
        raise EngineMissing(
            f"no Docker engine answers at {url}: {_short(exc)}. {remedy}"
        ) from None
    return client


def unavailable_reason(settings: DockerSettings) -> str | None:
    """Why the docker backend cannot run here (no engine), or None if it can.

    An engine that is there but does not answer is an error, not a reason:
    its cells fail, so the next run measures them again.
    """
    try:
        connect(settings, timeout=min(settings.timeout_s, PING_TIMEOUT_S)).close()
    except EngineMissing as exc:
        return str(exc)
    return None


def image_for(client: Any, settings: DockerSettings, iperf3: str) -> str:
    """Return the image endpoints run: the host-iperf3 one, or the configured one."""
    from docker.errors import DockerException, ImageNotFound

    if settings.image == "auto":
        try:
            return ensure_host_image(client.api, iperf3)
        except DockerException as exc:
            raise ProvisionError(
                f"cannot import the iperf3 image into the engine: {_short(exc)}."
            ) from None
    try:
        client.images.get(settings.image)
    except ImageNotFound:
        log.info("image %s is not on the engine; pulling it", settings.image)
        try:
            client.images.pull(settings.image)
        except DockerException as exc:
            raise ProvisionError(
                f"config key 'docker.image' is {settings.image!r}, which is not on "
                f"the engine and could not be pulled ({_short(exc)}). Build it "
                f"(docker build -t {settings.image} workflow/docker), or use "
                "docker.image: auto for an image made from this machine's iperf3."
            ) from None
    except DockerException as exc:
        raise ProvisionError(
            f"cannot look up image {settings.image!r}: {_short(exc)}."
        ) from None
    return settings.image


class DockerBackend:
    """Creates, enters and removes the endpoint containers of one cell."""

    name = "docker"

    def __init__(
        self,
        settings: DockerSettings,
        *,
        token: str,
        cell: str,
        iperf3: str,
        limit_s: float,
    ) -> None:
        self.settings = settings
        self.token = token
        self.cell = cell
        self.client = connect(settings)
        try:
            # The one request that waits for a client to finish must outlive
            # the test; every other one gets docker.timeout_s.
            self.streams = connect(settings, timeout=limit_s + 30)
        except ProvisionError:
            self.client.close()
            raise
        try:
            self.image = image_for(self.client, settings, iperf3)
        except ProvisionError:
            self.client.close()
            self.streams.close()
            raise
        self.netns = NetnsBackend()
        self.sockets = self.netns.sockets
        self.iperf3 = iperf3 if settings.image == "auto" else "iperf3"
        self.containers: dict[str, Any] = {}
        # Containers the engine would not remove: the record keeps them.
        self.left: list[str] = []
        self.info: dict[str, Any] = {}

    # -- endpoints -----------------------------------------------------------

    def create(self, name: str) -> IPRoute:
        """Create a bare namespace (a driver's router or node namespace)."""
        return self.netns.create(name)

    def open(self, name: str) -> IPRoute:
        """Open a socket inside an existing namespace."""
        return self.netns.open(name)

    def create_endpoints(
        self, names: Sequence[str], *, host_network: bool = False
    ) -> None:
        """Start one container per endpoint and open a socket into each."""
        for name in names:
            check_own_name(name)
        # The engine's calls run side by side; namespaces are bound and
        # entered here, in the main thread, as NetnsBackend requires.
        started = _parallel(
            lambda name: self._start(name, host_network=host_network), names
        )
        for name, container in zip(names, started, strict=True):
            if host_network:
                self.netns.create(name)
                continue
            pid = container.attrs["State"]["Pid"]
            try:
                netns.attach(name, pid)
            except OSError as exc:
                raise ProvisionError(
                    f"cannot bind the network namespace of container {name} "
                    f"(pid {pid}) under /run/netns: {exc}."
                ) from exc
            self.netns.open(name)
        self._check_iperf3(next(iter(self.containers.values())))

    def _start(self, name: str, *, host_network: bool) -> Any:
        from docker.errors import DockerException

        try:
            container = self.client.containers.run(
                self.image,
                command=["sleep", "infinity"],
                name=name,
                detach=True,
                network_mode="host" if host_network else "none",
                labels={LABEL: self.token, CELL_LABEL: self.cell},
                # Nothing survives the cell, and the engine never restarts it.
                restart_policy={"Name": "no"},
            )
            # Known at once, so that teardown removes it whatever comes next.
            self.containers[name] = container
            container.reload()
        except DockerException as exc:
            # A container the engine created but could not start is removed.
            with contextlib.suppress(DockerException):
                self.client.containers.get(name).remove(force=True)
            raise ProvisionError(
                f"cannot start container {name} from image {self.image}: {_short(exc)}"
            ) from None
        if container.attrs["State"].get("Pid", 0) <= 0:
            raise ProvisionError(
                f"container {name} from image {self.image} exited at once "
                f"({container.attrs['State'].get('Status')}); its image needs a "
                "`sleep` command to idle on."
            )
        return container

    def _check_iperf3(self, container: Any) -> None:
        """Fail the cell at once if the image has no working iperf3."""
        code, output = container.exec_run([self.iperf3, "--version"])
        text = output.decode(errors="replace").strip()
        if code != 0:
            raise MeasurementError(
                f"image {self.image} has no working iperf3 ({self.iperf3!r} "
                f"gave exit code {code}: {text[:200]}). Use docker.image: auto, "
                "or an image with iperf3 on its PATH (workflow/docker/Dockerfile)."
            )
        image = self.client.images.get(self.image)
        version = self.client.version()
        self.info = {
            "name": self.name,
            "image": self.image,
            "image_id": image.id,
            "engine_version": version.get("Version"),
            "engine_api_version": version.get("ApiVersion"),
            "iperf3_in_image": text.splitlines()[0] if text else None,
        }

    def remove(self, name: str) -> None:
        """Remove endpoint or namespace ``name``: binding, socket, container."""
        self.netns.remove(name)
        container = self.containers.pop(name, None)
        if container is not None and not remove_container(container):
            self.left.append(name)

    def remove_all(self, names: Sequence[str]) -> None:
        """Remove several endpoints, the engine's part side by side."""
        containers = []
        for name in names:
            self.netns.remove(name)
            if name in self.containers:
                containers.append(self.containers.pop(name))
        removed = _parallel(remove_container, containers)
        self.left += [
            c.name for c, ok in zip(containers, removed, strict=True) if not ok
        ]

    def leftovers(self) -> list[str]:
        """The containers teardown could not remove."""
        return list(self.left)

    def close(self) -> None:
        """Remove what is left, close every socket and the engine's client."""
        self.remove_all(list(self.containers))
        self.netns.close()
        self.client.close()
        self.streams.close()

    # -- processes -----------------------------------------------------------

    def gate(self) -> DockerGate:
        """A gate that holds started execs until it opens."""
        return DockerGate()

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        gate: DockerGate | None = None,
        host_network: bool = False,
    ) -> DockerProcess:
        """Run ``argv`` inside endpoint container ``name`` through the engine."""
        container = self.containers[name]
        argv = [self.iperf3, *argv[1:]] if argv else []
        proc = DockerProcess(self.client.api, self.streams.api, container, argv, name)
        if gate is not None:
            gate.hold(proc)
        else:
            proc.start()
        return proc


class DockerProcess:
    """One exec inside an endpoint container, run on a thread of its own."""

    # Removing the container kills it; no PID needs a record.
    recordable = False

    def __init__(
        self, api: Any, streams: Any, container: Any, argv: list[str], netns: str
    ) -> None:
        self.api = api
        self.streams = streams
        self.argv = argv
        self.netns = netns
        # The container's first process shares its network namespace.
        self.ns_pid: int = container.attrs["State"]["Pid"]
        self.returncode: int | None = None
        self._exec = api.exec_create(container.id, argv, stdout=True, stderr=True)
        self._out = b""
        self._err = b""
        self._pid = 0
        self._killed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: str | None = None

    def start(self) -> None:
        """Start the exec; it runs until iperf3 exits."""
        self._thread.start()

    def _run(self) -> None:
        from docker.errors import DockerException

        try:
            out, err = self.streams.exec_start(self._exec["Id"], demux=True)
            self._out, self._err = out or b"", err or b""
            self.returncode = self.api.exec_inspect(self._exec["Id"])["ExitCode"]
        except (DockerException, OSError) as exc:
            self._error = _short(exc)
            self.returncode = -1

    @property
    def pid(self) -> int:
        """The exec's process ID on the host while it runs; else 0.

        Found in /proc, not asked of the engine, so that a stuck engine cannot
        keep netpipe from killing a hung iperf3: the process that runs this
        exec's command line inside the container's PID namespace.
        """
        if not self._pid and self._thread.ident is not None:
            self._pid = _find_process(self.ns_pid, self.argv)
        return self._pid

    def poll(self) -> int | None:
        """The exit code once the exec has ended, else None."""
        if self._thread.ident is None:
            return None
        if self._thread.is_alive():
            # Killed, but the engine has not reported it (it may be stuck).
            return -signal.SIGKILL if self._killed else None
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds; return the exit code or None."""
        return wait_for_exit(self.poll, timeout)

    def output(self) -> tuple[str, str]:
        """What the exec printed on stdout and stderr (once it has ended)."""
        err = self._err.decode(errors="replace")
        if self._error:
            err += f"\nnetpipe: the engine's exec failed: {self._error}"
        return self._out.decode(errors="replace"), err

    def kill(self) -> None:
        """Kill the exec's process if it still runs, and wait for its thread."""
        if self._thread.ident is None or self._killed:
            return
        self._killed = True
        if self._thread.is_alive() and self.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        # With a stuck engine the exec's request may never return; its thread
        # is a daemon, and removing the container ends the process anyway.
        self._thread.join(timeout=2)

    def close(self) -> None:
        """Kill the process; the container's removal takes what is left."""
        self.kill()


def _find_process(ns_pid: int, argv: list[str]) -> int:
    """The PID of a process running ``argv`` in the PID namespace of ``ns_pid``."""
    try:
        want_ns = os.readlink(f"/proc/{ns_pid}/ns/pid")
    except OSError:
        return 0
    want = "\0".join(argv).encode() + b"\0"
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit() or entry.name == str(ns_pid):
                continue
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") != want_ns:
                    continue
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if f.read() == want:
                        return int(entry.name)
            except OSError:
                continue
    return 0


class DockerGate:
    """Holds execs until :meth:`open`, then starts all of them at once."""

    def __init__(self) -> None:
        self._held: list[DockerProcess] = []
        self.released: dict[int, float] = {}
        self._stamps: list[tuple[DockerProcess, float]] = []

    def hold(self, proc: DockerProcess) -> None:
        """Hold ``proc`` until the gate opens."""
        self._held.append(proc)

    def open(self) -> None:
        """Start every held exec, each on its own thread, back to back."""
        for proc in self._held:
            self._stamps.append((proc, time.time()))
            proc.start()

    def collect(self) -> dict[int, float]:
        """Return pid -> the time its exec was started."""
        for proc, stamp in self._stamps:
            self.released[proc.pid] = stamp
        return self.released

    def close(self) -> None:
        """Nothing to release: the threads end with their processes."""


def remove_container(container: Any) -> bool:
    """Kill and remove a container; return whether it is gone."""
    from docker.errors import DockerException, NotFound

    try:
        container.remove(force=True)
    except NotFound:
        pass
    except (DockerException, OSError) as exc:
        log.error("cannot remove container %s: %s", container.name, _short(exc))
        return False
    return True


def _parallel(func: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    """Apply ``func`` to every item on a few threads; re-raise the first error."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        futures = [pool.submit(func, item) for item in items]
        results = []
        error: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # the first error wins; all are awaited
                error = error or exc
    if error is not None:
        raise error
    return results


def _short(exc: BaseException) -> str:
    """An engine error in one line."""
    text = str(getattr(exc, "explanation", None) or exc)
    return " ".join(text.split())[:300]


@contextmanager
def client_for_cleanup(url: str | None) -> Iterator[Any]:
    """A client for cleanup, or None when no engine answers at ``url``."""
    try:
        client = connect(DockerSettings(url=url), timeout=PING_TIMEOUT_S)
    except ProvisionError:
        yield None
        return
    try:
        yield client
    finally:
        client.close()


def labelled_containers(client: Any) -> list[Any]:
    """Every container, running or not, that carries netpipe's label."""
    return list(client.containers.list(all=True, filters={"label": LABEL}))


def remove_unclaimed(client: Any, live_tokens: set[str]) -> list[str]:
    """Remove labelled containers no live run claims; return their names."""
    removed = []
    for container in labelled_containers(client):
        if container.labels.get(LABEL) in live_tokens:
            continue
        with contextlib.suppress(ValueError):
            # Its namespace binding has its name, if it is one of netpipe's.
            remove_netns(check_own_name(container.name))
        remove_container(container)
        removed.append(container.name)
    return removed
