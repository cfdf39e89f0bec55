"""Talking to nodes over SSH with fabric: connections, requests, ``nodes check``.

Every request runs netpipe's own ``node`` command on the node; the command
line holds only validated inventory values, each quoted with :mod:`shlex`,
and the request itself travels as JSON on the command's stdin, so no config
value ever reaches a remote shell as code. Host keys are checked against the
inventory's known_hosts file unless a node opts out. Work that fans out to
several nodes runs in parallel, one thread per node as fabric's
ThreadingGroup does; if some nodes fail, the error names each of them and
what it said.
"""

from __future__ import annotations

import json
import logging
import platform
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import paramiko
from fabric import Connection

import netpipe
from netpipe import interrupt
from netpipe.config import Config
from netpipe.errors import NetpipeError, NodeError
from netpipe.inventory import Node
from netpipe.iperf.command import iperf_version, resolve_binary

log = logging.getLogger(__name__)

T = TypeVar("T")


def connect(node: Node) -> Connection:
    """Open an SSH connection to ``node``, checking its host key; or raise."""
    ssh = node.ssh
    conn = Connection(
        ssh.host,
        user=ssh.user,
        port=ssh.port,
        connect_timeout=ssh.timeout_s,
        connect_kwargs={
            "key_filename": ssh.key_file,
            # Only the inventory's key: never whatever ~/.ssh or an agent holds.
            "look_for_keys": False,
            "allow_agent": False,
            "banner_timeout": ssh.timeout_s,
            "auth_timeout": ssh.timeout_s,
        },
    )
    if ssh.host_key_check:
        # fabric accepts unknown host keys by default; netpipe refuses them.
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        conn.client.load_host_keys(ssh.known_hosts)
    else:
        conn.client.set_missing_host_key_policy(paramiko.WarningPolicy())
    try:
        conn.open()
    except paramiko.BadHostKeyException as exc:
        raise NodeError(
            f"node {node.name}: the host key of {ssh.host} does not match the one "
            f"in {ssh.known_hosts}; if the node was rebuilt, remove its old line "
            f"(ssh-keygen -R {ssh.host} -f {ssh.known_hosts}) and add the new key."
        ) from exc
    except paramiko.AuthenticationException as exc:
        raise NodeError(
            f"node {node.name}: {ssh.user}@{ssh.host}:{ssh.port} refused the key "
            f"{ssh.key_file} ({exc}); add its public key to the node's "
            "authorized_keys or name the right key in ssh.key_file."
        ) from exc
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            raise NodeError(
                f"node {node.name}: the host key of {ssh.host} is not in "
                f"{ssh.known_hosts} (unknown host); check the node's fingerprint, "
                f"then add it with `ssh-keyscan -p {ssh.port} {ssh.host} >> "
                f"{ssh.known_hosts}`, or set ssh.host_key_check: false for a "
                "throwaway lab."
            ) from exc
        raise NodeError(f"node {node.name}: SSH to {ssh.host} failed: {exc}") from exc
    except (OSError, EOFError) as exc:
        raise NodeError(
            f"node {node.name}: cannot reach {ssh.host}:{ssh.port} over SSH "
            f"({exc or type(exc).__name__}); check that the node is up, its sshd "
            "runs and ssh.host and ssh.port are right."
        ) from exc
    return conn


def node_command(node: Node, op: str) -> str:
    """The command line of netpipe's ``node`` command on ``node``."""
    argv = [node.netpipe, "node", op]
    if node.ssh.user != "root":
        argv = ["sudo", "-n", *argv]
    return shlex.join(argv)


class Session:
    """One running ``netpipe node OP`` on a node: JSON lines in and out."""

    def __init__(self, node: Node, conn: Connection, op: str, request: Any) -> None:
        self.node = node
        self.op = op
        transport = conn.client.get_transport()
        if transport is None:
            raise NodeError(f"node {node.name}: the SSH connection is closed.")
        self.channel = transport.open_session()
        self.channel.exec_command(node_command(node, op))
        self.channel.sendall((json.dumps(request) + "\n").encode())
        self.stdout = self.channel.makefile("rb")

    def close_input(self) -> None:
        """Tell the node the request is complete (EOF on its stdin)."""
        self.channel.shutdown_write()

    def read(self, timeout: float, *, interruptible: bool = True) -> dict[str, Any]:
        """Return the next JSON line the node prints, or raise naming it.

        While nothing has arrived, a Ctrl-C or SIGTERM of the cell is noticed;
        the caller then closes the sessions, which makes the nodes tear down.
        """
        deadline = time.monotonic() + timeout
        channel = self.channel
        while interruptible and not (
            channel.recv_ready() or channel.exit_status_ready() or channel.closed
        ):
            interrupt.check()
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        # A line that has begun arrives whole soon; wait for it at once,
        # since a timeout inside readline would lose what it had read.
        self.channel.settimeout(max(deadline - time.monotonic(), 1.0))
        try:
            line = self.stdout.readline()
        except TimeoutError:
            raise NodeError(
                f"node {self.node.name}: no answer to `netpipe node {self.op}` "
                f"within {timeout:.0f} s."
            ) from None
        if not line:
            raise NodeError(self._failure("ended without an answer"))
        try:
            answer = json.loads(line)
        except ValueError:
            raise NodeError(
                self._failure(f"printed {line[:200].decode(errors='replace')!r}")
            ) from None
        if answer.get("error"):
            raise NodeError(f"node {self.node.name}: {answer['error']}")
        return dict(answer)

    def forward_log(self, timeout: float = 5.0) -> None:
        """Copy what netpipe logged on the node into this machine's log."""
        deadline = time.monotonic() + timeout
        while not self.channel.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        err = b""
        while self.channel.recv_stderr_ready():
            err += self.channel.recv_stderr(65536)
        for line in err.decode(errors="replace").splitlines():
            if line.strip():
                log.info("%s: %s", self.node.name, line)

    def _failure(self, what: str) -> str:
        self.channel.settimeout(5)
        code = self.channel.recv_exit_status()
        err = b""
        while self.channel.recv_stderr_ready():
            err += self.channel.recv_stderr(65536)
        text = err.decode(errors="replace").strip()[-400:]
        hint = ""
        if code == 127:
            hint = (
                f"; is netpipe installed there? (inventory key 'netpipe' is "
                f"{self.node.netpipe!r}; see README.md, 'Switched topology')"
            )
        return (
            f"node {self.node.name}: `netpipe node {self.op}` {what} (exit code "
            f"{code}): {text or 'no message'}{hint}"
        )


def call(node: Node, op: str, request: Any, timeout: float) -> dict[str, Any]:
    """Run one request on ``node`` and return its answer."""
    with connect(node) as conn:
        session = Session(node, conn, op, request)
        session.close_input()
        return session.read(timeout)


def fan_out(nodes: Sequence[Node], work: Callable[[Node], T]) -> dict[str, T]:
    """Run ``work`` for every node in parallel; raise naming every node that failed."""
    with ThreadPoolExecutor(max_workers=max(len(nodes), 1)) as pool:
        futures = {node.name: pool.submit(work, node) for node in nodes}
    results, failures = {}, []
    for name, future in futures.items():
        exc = future.exception()
        if exc is None:
            results[name] = future.result()
        elif isinstance(exc, NodeError):
            failures.append(str(exc))
        else:
            failures.append(f"node {name}: {type(exc).__name__}: {exc}")
    if failures:
        raise NodeError(_several(failures))
    return results


def _several(failures: list[str]) -> str:
    if len(failures) == 1:
        return failures[0]
    return f"{len(failures)} nodes failed:\n" + "\n".join(f"- {f}" for f in failures)


def info_request(node: Node) -> dict[str, Any]:
    """What ``netpipe node info`` is asked about one node."""
    return {"iperf3": node.iperf3, "data_interface": node.data_interface}


def check_nodes(
    config: Config,
    nodes: Sequence[Node] | None = None,
    *,
    raise_on_error: bool = True,
) -> dict[str, Any]:
    """Ask every node what it is and can run; return the report, or raise."""
    nodes = list(config.nodes if nodes is None else nodes)

    def ask(node: Node) -> dict[str, Any]:
        return call(node, "info", info_request(node), timeout=60)

    answers: dict[str, Any] = {}
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max(len(nodes), 1)) as pool:
        futures = {node.name: pool.submit(ask, node) for node in nodes}
    for node in nodes:
        exc = futures[node.name].exception()
        if exc is None:
            answers[node.name] = futures[node.name].result()
            errors += _node_problems(node, answers[node.name])
        else:
            errors.append(
                str(exc) if isinstance(exc, NodeError) else f"node {node.name}: {exc}"
            )
    report = {
        "controller": _controller(config),
        "nodes": answers,
        "errors": errors,
        "warnings": _mismatches(config, answers),
    }
    for warning in report["warnings"]:
        log.warning("%s", warning)
    if errors and raise_on_error:
        raise NodeError(_several(errors))
    return report


def _controller(config: Config) -> dict[str, Any]:
    try:
        iperf: str | None = iperf_version(resolve_binary(config.iperf.binary))
    except NetpipeError:
        iperf = None
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "netpipe_version": netpipe.__version__,
        "iperf3_version": iperf,
    }


def _node_problems(node: Node, answer: dict[str, Any]) -> list[str]:
    """What makes a reachable node unusable for switched cells."""
    problems = []
    at = f"node {node.name}"
    if not answer.get("is_root"):
        problems.append(
            f"{at}: netpipe runs there as {answer.get('user')!r}, not root; log in "
            "as root (ssh.user: root) or as a user with sudo without a password."
        )
    if answer.get("iperf3_error"):
        problems.append(f"{at}: {answer['iperf3_error']}")
    if not answer.get("data_interface_found"):
        problems.append(
            f"{at}: the data interface {node.data_interface!r} (inventory key "
            f"'data_interface') does not exist there; it has "
            f"{', '.join(answer.get('interfaces', [])) or 'no interfaces'}."
        )
    return problems


def _mismatches(config: Config, answers: dict[str, Any]) -> list[str]:
    """Version differences between the nodes and the controller: warnings."""
    warnings = []
    for key, what in (
        ("iperf3_version", "iperf3 versions differ, which gives wrong UDP loss"),
        ("netpipe_version", "netpipe versions differ"),
    ):
        seen = {name: a.get(key) for name, a in answers.items()}
        if len(set(seen.values())) > 1:
            listed = ", ".join(f"{n} {v}" for n, v in sorted(seen.items()))
            warnings.append(
                f"{what}: {listed}; install the same version on every node."
            )
    mine = netpipe.__version__
    for name, answer in sorted(answers.items()):
        if answer.get("netpipe_version") not in (None, mine):
            warnings.append(
                f"node {name} runs netpipe {answer['netpipe_version']}, the "
                f"controller {mine}; install the same version on every node."
            )
    return warnings


def format_report(report: dict[str, Any]) -> str:
    """Render a ``nodes check`` report for a terminal."""
    c = report["controller"]
    lines = [
        f"controller {c['hostname']}: netpipe {c['netpipe_version']}, kernel "
        f"{c['kernel']}, iperf3 {c['iperf3_version']}"
    ]
    for name, a in report["nodes"].items():
        lines.append(
            f"{name} ({a.get('hostname')}): reachable, root "
            f"{'yes' if a.get('is_root') else 'no'}, kernel {a.get('kernel')}, "
            f"iperf3 {a.get('iperf3_version') or 'missing'}, netpipe "
            f"{a.get('netpipe_version')}"
        )
        for driver, reason in sorted(a.get("drivers", {}).items()):
            lines.append(f"  {driver:16} {'available' if reason is None else reason}")
    lines += [f"warning: {w}" for w in report["warnings"]]
    lines += [f"error: {e}" for e in report["errors"]]
    return "\n".join(lines)
