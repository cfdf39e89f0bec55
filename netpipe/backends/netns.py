"""Endpoints as network namespaces, made and entered through pyroute2.

Namespaces are created in the calling thread (unshare, then a bind mount under
``/run/netns``) rather than in a forked helper, because a fork per namespace
makes 256 endpoints take seconds. The thread returns to the namespace netpipe
started in through a file descriptor opened at start-up, never through
``/proc/1/ns/net``, which a container may not be allowed to open.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, NoReturn

from pyroute2 import IPRoute, netns

from netpipe import interrupt
from netpipe.errors import ProvisionError
from netpipe.naming import check_own_name

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
NETNS_DIR = "/run/netns"
_libc = ctypes.CDLL(None, use_errno=True)
MAX_FD = 65536


class Process:
    """A process netpipe started inside an endpoint, with its output files."""

    # Its PID goes in the cell's record, so that cleanup can end it.
    recordable = True

    def __init__(
        self,
        pid: int,
        argv: list[str],
        netns: str,
        stdout: IO[bytes],
        stderr: IO[bytes],
    ) -> None:
        self.pid = pid
        self.argv = argv
        self.netns = netns
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None

    @property
    def ns_pid(self) -> int:
        """A process in the same network namespace: this one."""
        return self.pid

    def poll(self) -> int | None:
        """Reap the process if it has ended; return its exit code or None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds; return the exit code or None."""
        return wait_for_exit(self.poll, timeout)

    def output(self) -> tuple[str, str]:
        """Return what the process printed on stdout and stderr so far."""
        texts = []
        for f in (self.stdout, self.stderr):
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
        return texts[0], texts[1]

    def kill(self) -> None:
        """Kill the process if it still runs and reap it."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        """Kill and reap the process, then close its output files."""
        self.kill()
        self.stdout.close()
        self.stderr.close()


def wait_for_exit(poll: Callable[[], int | None], timeout: float) -> int | None:
    """Call ``poll`` until it gives an exit code or ``timeout`` seconds pass.

    The wait stops early for SIGINT and SIGTERM (``interrupt.check``).
    """
    deadline = time.monotonic() + timeout
    while (code := poll()) is None and time.monotonic() < deadline:
        interrupt.check()
        time.sleep(0.01)
    return code


def proc_start_time(pid: int) -> int | None:
    """Return a process's start time in clock ticks, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields resume after ')'.
    return int(stat.rsplit(b")", 1)[1].split()[19])


class NetnsBackend:
    """Creates, enters and removes the network namespaces of one cell."""

    name = "netns"

    def __init__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            # /proc/self/ns/net, which pyroute2 binds, names the main thread's
            # namespace; creating from another thread would bind the wrong one.
            raise ProvisionError("namespaces must be created from the main thread.")
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.sockets: dict[str, IPRoute] = {}

    def create(self, name: str) -> IPRoute:
        """Create namespace ``name`` and return a netlink socket inside it."""
        check_own_name(name)
        try:
            netns.setns(name, flags=os.O_CREAT | os.O_EXCL, fork=False)
            sock = IPRoute()
        except OSError as exc:
            raise ProvisionError(
                f"cannot create network namespace {name!r}: {exc}; is this run "
                "as root, and is /run/netns writable?"
            ) from exc
        finally:
            self._go_home()
        self.sockets[name] = sock
        return sock

    def open(self, name: str) -> IPRoute:
        """Open a netlink socket inside the existing namespace ``name``."""
        try:
            netns.setns(name, flags=0, fork=False)
            sock = IPRoute()
        except OSError as exc:
            raise ProvisionError(
                f"cannot enter network namespace {name!r}: {exc}"
            ) from exc
        finally:
            self._go_home()
        self.sockets[name] = sock
        return sock

    def create_endpoints(
        self, names: Sequence[str], *, host_network: bool = False
    ) -> None:
        """Create one namespace per endpoint."""
        for name in names:
            interrupt.check()
            self.create(name)

    def remove_all(self, names: Sequence[str]) -> None:
        """Remove several namespaces."""
        for name in names:
            self.remove(name)

    def gate(self) -> Gate:
        """A gate that holds forked clients until it opens."""
        return Gate()

    def remove(self, name: str) -> None:
        """Close the socket into ``name`` and remove the namespace, if present."""
        sock = self.sockets.pop(name, None)
        if sock is not None:
            sock.close()
        remove_netns(name)

    def close(self) -> None:
        """Close every socket and the handle on the starting namespace."""
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        if self._home >= 0:
            os.close(self._home)
            self._home = -1

    def spawn(
        self,
        name: str | None,
        argv: Sequence[str],
        *,
        gate: Gate | None = None,
        host_network: bool = False,
    ) -> Process:
        """Start ``argv`` inside namespace ``name``; with a gate, hold it there.

        ``name`` None, or ``host_network``, means the namespace netpipe
        started in (the host driver).

        The process is forked by hand rather than through ``subprocess``,
        whose Popen waits for the exec and so cannot hold a child at a gate.
        Output goes to unnamed temporary files rather than pipes, so that no
        number of processes writing large JSON documents can block each other.
        """
        argv = list(argv)
        # Both files live as long as the Process that owns them.
        stdout = tempfile.TemporaryFile()  # noqa: SIM115
        stderr = tempfile.TemporaryFile()  # noqa: SIM115
        if name is None or host_network:
            name = None
            nsfd = os.dup(self._home)
        else:
            nsfd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
        parent = os.getpid()
        try:
            pid = os.fork()
            if pid == 0:  # the child: never returns
                _child(argv, nsfd, stdout.fileno(), stderr.fileno(), gate, parent)
        except OSError as exc:
            stdout.close()
            stderr.close()
            raise ProvisionError(
                f"cannot start {argv[0]!r} in namespace {name!r}: {exc}"
            ) from exc
        finally:
            os.close(nsfd)
        return Process(pid, argv, name or "the starting namespace", stdout, stderr)

    def _go_home(self) -> None:
        if _libc.setns(self._home, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise ProvisionError(
                f"cannot return to the starting network namespace: {os.strerror(err)}"
            )


class Gate:
    """Holds started clients until :meth:`open`, then records when each left.

    Each child blocks on a pipe in its pre-exec hook; closing the write end
    releases all of them at once, so N clients start within microseconds of
    each other instead of one after another as in the study's shell loop.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        self._report_r, self._report_w = os.pipe()
        self.released: dict[int, float] = {}

    def open(self) -> None:
        """Release every child waiting on the gate."""
        if self._write >= 0:
            os.close(self._write)
            self._write = -1
        os.close(self._report_w)
        self._report_w = -1

    def collect(self) -> dict[int, float]:
        """Return pid -> release time (epoch seconds) of every released child."""
        chunks = []
        while chunk := os.read(self._report_r, 65536):
            chunks.append(chunk)
        for line in b"".join(chunks).decode().splitlines():
            pid, stamp = line.split()
            self.released[int(pid)] = float(stamp)
        return self.released

    def close(self) -> None:
        """Close whatever ends are still open."""
        for fd in (self._read, self._write, self._report_r, self._report_w):
            if fd >= 0:
                os.close(fd)
        self._read = self._write = self._report_r = self._report_w = -1


def _child(
    argv: list[str],
    nsfd: int,
    out: int,
    err: int,
    gate: Gate | None,
    parent: int,
) -> NoReturn:
    """In a forked child: enter the namespace, wait at the gate, exec."""
    try:
        os.setsid()
        # If the runner is killed outright, the kernel kills its iperf3s too.
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
        if _libc.setns(nsfd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        if gate is not None:
            # The write end is inherited too: close it, or EOF never comes.
            os.close(gate._write)
            os.read(gate._read, 1)
            stamp = f"{os.getpid()} {time.time():.6f}\n".encode()
            os.write(gate._report_w, stamp)
        os.closerange(3, MAX_FD)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.execv(argv[0], argv)  # noqa: S606  (an argument list, no shell)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"netpipe: cannot start {argv[0]}: {exc}\n".encode())
    os._exit(127)


def remove_netns(name: str) -> bool:
    """Remove namespace ``name`` if it exists; return whether it did."""
    path = os.path.join(NETNS_DIR, name)
    if not os.path.exists(path):
        return False
    try:
        netns.remove(name)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise ProvisionError(f"cannot remove namespace {name!r}: {exc}") from exc
    return True


def list_netns() -> list[str]:
    """Return the names under /run/netns."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def stop_process(pid: int, start_time: int | None, *, timeout: float = 2.0) -> bool:
    """Kill ``pid`` if it is still the process that started at ``start_time``."""
    if start_time is not None and proc_start_time(pid) != start_time:
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc_start_time(pid) == start_time:
        time.sleep(0.01)
    return True
