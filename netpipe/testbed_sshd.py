"""The SSH servers of the emulated testbed's nodes: keys, config, start, stop.

Each node runs Debian's ``sshd`` inside its namespace, started through a
``setns`` before exec; it daemonises and writes its pid file in the node's
folder, and is stopped by that PID (checked to still be an sshd) and with
every other process in the node's namespace when the testbed comes down.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netpipe.backends.netns import CLONE_NEWNET, NETNS_DIR, proc_start_time
from netpipe.errors import NodeError

if TYPE_CHECKING:
    from netpipe.testbed import State

SSH_PORT = 22
_libc = ctypes.CDLL(None, use_errno=True)


def keygen(binary: str, path: Path, comment: str) -> None:
    """Make an ed25519 key pair without a passphrase at ``path``."""
    try:
        subprocess.run(
            [binary, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise NodeError(f"cannot make an SSH key {path} with {binary}: {exc}") from exc


def start_sshd(
    state: State, node: dict[str, Any], sshd: str, keygen_bin: str, authorized: Path
) -> str:
    """Start the node's sshd in its namespace; return its known_hosts line."""
    folder = Path(node["folder"])
    (folder / "state").mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    host_key = folder / "ssh_host_ed25519_key"
    keygen(keygen_bin, host_key, f"netpipe-testbed-{node['name']}")
    pid_file = folder / "sshd.pid"
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {node['mgmt_address']}:{SSH_PORT}",
                f"HostKey {host_key}",
                f"PidFile {pid_file}",
                f"AuthorizedKeysFile {authorized}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                # PAM's session modules (loginuid) fail in many containers.
                "UsePAM no",
                "PrintMotd no",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                f"SetEnv NETPIPE_STATE_DIR={folder / 'state'}",
                "",
            ]
        )
    )
    _privsep_dir()
    # The pid is known only once sshd has written it: record the file first.
    state.add("sshd", {"node": node["name"], "pid_file": str(pid_file)})
    nsfd = os.open(os.path.join(NETNS_DIR, node["netns"]), os.O_RDONLY)
    try:
        done = subprocess.run(
            [sshd, "-f", str(config), "-E", str(folder / "sshd.log")],
            capture_output=True,
            text=True,
            timeout=30,
            pass_fds=(nsfd,),
            # preexec_fn is safe here: the CLI has no other threads yet.
            preexec_fn=lambda: _enter(nsfd),
        )
    finally:
        os.close(nsfd)
    if done.returncode != 0:
        log_text = tail(folder / "sshd.log")
        raise NodeError(
            f"sshd for testbed node {node['name']} did not start (exit code "
            f"{done.returncode}): {(done.stderr or log_text).strip()[:400]}"
        )
    return f"{node['mgmt_address']} {(folder / 'ssh_host_ed25519_key.pub').read_text()}"


def _enter(nsfd: int) -> None:
    """In the forked child, before exec: enter the node's network namespace."""
    if _libc.setns(nsfd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def _privsep_dir() -> None:
    # Debian's sshd refuses to start without its privilege separation folder,
    # which only its own service unit creates.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)


def tail(path: Path) -> str:
    """The end of a log file, or '' if it cannot be read."""
    try:
        return path.read_text()[-400:]
    except OSError:
        return ""


def wait_listening(node: dict[str, Any], timeout: float = 10.0) -> None:
    """Wait until the node's sshd accepts connections on its management address."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((node["mgmt_address"], SSH_PORT), 1.0) as s:
                s.recv(4)  # the server's version banner
                return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise NodeError(
                    f"sshd of testbed node {node['name']} does not answer on "
                    f"{node['mgmt_address']}:{SSH_PORT} after {timeout:.0f} s: "
                    f"{exc}; its log: {tail(Path(node['folder']) / 'sshd.log')}"
                ) from exc
            time.sleep(0.05)


def kill(pid: int, timeout: float = 2.0) -> bool:
    """Kill ``pid`` and wait until it is gone or a zombie; return whether it ran."""
    start = proc_start_time(pid)
    if start is None or _state(pid) == "Z":
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    # The daemons' parent is init, which may reap them late (or, in some
    # containers, never): a zombie has ended, so it counts as gone.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc_start_time(pid) != start or _state(pid) in ("Z", None):
            break
        time.sleep(0.01)
    return True


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat.rsplit(b")", 1)[1].split()[0].decode()


def read_pid(path: Path) -> int | None:
    """The PID in a pid file, or None."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_sshd(pid: int) -> bool:
    """Whether ``pid`` still runs an sshd (a pid file may outlive its process)."""
    try:
        return Path(f"/proc/{pid}/exe").resolve().name == "sshd"
    except OSError:
        return False


def pids_in_netns(netns: str) -> list[int]:
    """Processes whose network namespace is the named one."""
    try:
        want = os.stat(os.path.join(NETNS_DIR, netns)).st_ino
    except OSError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(entry / "ns" / "net").st_ino == want:
                    found.append(int(entry.name))
    return found


def sshd_binary() -> str:
    """The path of Debian's sshd, or an error saying how to install it."""
    found = shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise NodeError(
            "sshd was not found in /usr/sbin; the testbed's nodes need it: "
            "apt-get install openssh-server (the system service need not run)."
        )
    return found


def keygen_binary() -> str:
    """The path of ssh-keygen, or an error saying how to install it."""
    found = shutil.which("ssh-keygen")
    if found is None:
        raise NodeError(
            "ssh-keygen was not found; apt-get install openssh-client "
            "(openssh-server brings it)."
        )
    return found
