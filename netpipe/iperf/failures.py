"""Failure classes of misbehaving iperf3 runs, and retries of the transient ones.

This module owns the answer to "why did this cell's iperf3 not measure?": it
reads what each pair's client and server printed and gives one stable short
name (the cell's ``error_class``) with iperf3's own message. A run that
finished but moved no data (UDP dropped by a firewall, large frames dropped on
the path) is a failure here, never a throughput of 0. Classes that go away by
themselves (a busy server, a refused connection while servers start) are
retried with back-off by :func:`run_with_retries`, and every attempt is kept
for the result file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import tenacity

from netpipe import interrupt
from netpipe.errors import IperfFailure, MeasurementError
from netpipe.iperf.command import iperf_version, resolve_binary
from netpipe.iperf.reader import parse_text

if TYPE_CHECKING:
    from netpipe.backends import Proc

log = logging.getLogger(__name__)

# Every class a failed iperf3 cell can have, with what it means to a user.
CLASSES = {
    "server-busy": "the iperf3 server was already running another test",
    "connection-refused": "nothing listened on the server's address and port",
    "port-in-use": "the server's port was taken by another process",
    "control-closed": "the control connection closed in the middle of the test",
    "udp-no-data": "the UDP receiver saw no datagrams while the control "
    "connection worked",
    "mtu-blackhole": "TCP data stopped arriving while the control connection "
    "worked: a device on the path drops large frames",
    "timeout": "iperf3 did not finish within the cell's time limit",
    "bad-json": "iperf3's JSON output was empty, cut short or not JSON",
    "iperf3-missing": "the iperf3 executable was not found or does not run",
    "iperf3-too-old": "the iperf3 version lacks an option netpipe uses",
    "iperf3-error": "iperf3 reported an error netpipe has no class for",
}
TRANSIENT = frozenset({"server-busy", "connection-refused", "port-in-use"})
# netpipe's commands use -1 (one-off server) and --get-server-output: 3.1+.
MIN_VERSION = (3, 1)

# iperf3's messages (src/iperf_error.c, 3.0 to 3.19), most specific first.
_MESSAGES = [
    (re.compile(r"server is busy", re.I), "server-busy"),
    (re.compile(r"address already in use", re.I), "port-in-use"),
    (re.compile(r"connection refused", re.I), "connection-refused"),
    (
        re.compile(
            r"control socket has closed|unable to receive (control message|results)"
            r"|connection reset by peer|server has terminated|broken pipe",
            re.I,
        ),
        "control-closed",
    ),
    (re.compile(r"unrecognized option|invalid option|unknown option", re.I), "too"),
]
# When pairs fail differently, the cell takes the class that explains most.
_PRIORITY = [
    "mtu-blackhole",
    "udp-no-data",
    "control-closed",
    "server-busy",
    "port-in-use",
    "connection-refused",
    "iperf3-too-old",
    "bad-json",
    "timeout",
    "iperf3-error",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """Why one pair (or a whole attempt) did not measure."""

    error_class: str
    message: str

    @property
    def transient(self) -> bool:
        """Whether trying again may succeed."""
        return self.error_class in TRANSIENT


def classify_message(message: str) -> str:
    """Return the failure class of one iperf3 error message."""
    for pattern, name in _MESSAGES:
        if pattern.search(message):
            return "iperf3-too-old" if name == "too" else name
    return "iperf3-error"


def judge_pair(pair: dict[str, Any], *, timed_out: bool = False) -> Failure | None:
    """Classify one pair's run from its raw output; None if it measured."""
    client_text = pair.get("client_stdout") or ""
    server_text = pair.get("server_stdout")
    client = _document(client_text)
    server = _document(server_text or "")
    protocol = _protocol(client) or _protocol(server)
    if protocol is None and pair.get("client_command"):
        # Before its streams connect, iperf3's JSON does not name the protocol.
        protocol = "udp" if "-u" in pair["client_command"] else "tcp"

    stalled = _stalled(client, server, protocol, timed_out)
    if stalled is not None:
        return stalled
    parsed = parse_text(client_text, server_text=server_text)
    if parsed.status == "ok":
        return None  # a pair that finished before another one hung
    if timed_out:
        connected = ((client or {}).get("start") or {}).get("connected")
        if protocol == "udp" and connected == []:
            return Failure(
                "udp-no-data",
                "the UDP client never got an answer to its first datagram, so no "
                "data reached the server while the control connection worked "
                "(a firewall dropping UDP?)",
            )
        return Failure("timeout", "iperf3 did not finish in time and was killed")

    said = (client or {}).get("error")
    if said is None and not client_text.strip():
        said = (pair.get("client_stderr") or "").strip() or None
    if said is None:
        return Failure("bad-json", str(parsed.error))
    return Failure(classify_message(str(said)), f"iperf3 said: {str(said)[:300]}")


def judge_pairs(
    pairs: Sequence[dict[str, Any]], *, timed_out: bool, limit_s: float
) -> Failure | None:
    """Classify a whole attempt: the most telling pair failure, with each message."""
    found = [
        (pair.get("index", i), failure)
        for i, pair in enumerate(pairs)
        if (failure := judge_pair(pair, timed_out=timed_out)) is not None
    ]
    if not found and timed_out:
        found = [(None, Failure("timeout", "iperf3 did not finish in time"))]
    if not found:
        return None

    worst = min(found, key=lambda f: _PRIORITY.index(f[1].error_class))[1]
    parts = [
        f"pair {i}: {f.error_class}: {f.message}" if i is not None else f.message
        for i, f in found[:3]
    ]
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    head = CLASSES[worst.error_class]
    if timed_out:
        # The words "timed out" are what users and tests search for.
        head = f"timed out after {limit_s:.0f} s; {head}"
    return Failure(worst.error_class, f"{head}: {'; '.join(parts)}{more}")


def ask_to_stop(
    clients: Sequence[Proc], servers: Sequence[Proc] = (), grace_s: float = 2.0
) -> None:
    """SIGTERM hung clients so that iperf3 prints what it measured, then wait."""
    # iperf3 catches SIGTERM, tells its server, and prints its JSON with the
    # intervals so far; the server then prints its own and exits. Both are
    # what tells a stalled data path from a hang, so both get the grace time.
    running = [p for p in clients if p.poll() is None]
    for p in running:
        # An engine's exec whose PID is not known yet has pid 0, and kill(0)
        # would signal netpipe's whole process group.
        if p.pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for p in [*running, *servers]:
        if p.poll() is None:
            p.wait(timeout=max(deadline - time.monotonic(), 0.0))


def check_binary(binary: str) -> str:
    """Return iperf3's absolute path, or raise IperfFailure saying what is wrong."""
    try:
        path = resolve_binary(binary)
    except MeasurementError as exc:
        raise IperfFailure(str(exc), "iperf3-missing") from exc
    try:
        version = iperf_version(path)
    except MeasurementError as exc:
        raise IperfFailure(str(exc), "iperf3-missing") from exc

    numbers = tuple(int(n) for n in version.split(".")[:2])
    if numbers < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        raise IperfFailure(
            f"iperf3 at {path} is version {version}, but netpipe needs {wanted} or "
            "newer for -1 (one-off server) and --get-server-output; install a newer "
            "iperf3 or set iperf.binary to one.",
            "iperf3-too-old",
        )
    return path


def run_with_retries(
    attempt: Callable[[], T],
    judge: Callable[[T], Failure | None],
    *,
    retries: int,
    backoff_s: float,
    log_label: str,
    attempts: list[dict[str, Any]] | None = None,
) -> tuple[T, list[dict[str, Any]]]:
    """Run ``attempt`` until it does not fail transiently; return it and the log.

    A MeasurementError raised by an attempt (a server that would not start) is
    classified like a pair's failure; a transient one is retried, any other is
    raised at once, as the last one is, with its class. Each attempt is
    appended to ``attempts`` as it ends, so the log is whole even then.
    """
    attempts = [] if attempts is None else attempts

    def once() -> T:
        try:
            outcome = attempt()
        except MeasurementError as exc:
            name = getattr(exc, "error_class", None) or classify_message(str(exc))
            _note(attempts, Failure(name, str(exc)), log_label)
            if name in TRANSIENT:
                raise _Transient(name) from exc
            raise IperfFailure(str(exc), name) from exc
        failure = judge(outcome)
        _note(attempts, failure, log_label)
        return outcome

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(retries + 1),
        wait=tenacity.wait_exponential(multiplier=backoff_s, max=60),
        retry=(
            tenacity.retry_if_exception_type(_Transient)
            | tenacity.retry_if_result(
                lambda _: attempts[-1]["error_class"] in TRANSIENT
            )
        ),
        sleep=_sleep,
        retry_error_callback=_give_up,
        reraise=False,
    )
    return retrying(once), attempts


class _Transient(Exception):
    """An attempt raised a transient failure; tenacity retries on it."""


def _give_up(state: tenacity.RetryCallState) -> Any:
    """After the last attempt: return its outcome, or raise its error with class."""
    outcome = state.outcome
    if outcome is None:  # tenacity calls this only after an attempt
        raise RuntimeError("no attempt was made")
    exc = outcome.exception()
    if isinstance(exc, _Transient):
        cause = exc.__cause__
        raise IperfFailure(str(cause), exc.args[0]) from cause
    return outcome.result()


def _sleep(seconds: float) -> None:
    """Back off, but stop at once when a signal asks the cell to stop."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        interrupt.check()
        time.sleep(min(left, 0.1))


def _note(attempts: list[dict[str, Any]], failure: Failure | None, label: str) -> None:
    attempts.append(
        {
            "attempt": len(attempts) + 1,
            "status": "ok" if failure is None else "failed",
            "error_class": None if failure is None else failure.error_class,
            "message": None if failure is None else failure.message,
        }
    )
    if failure is not None:
        log.warning(
            "cell %s: attempt %d failed (%s): %s",
            label,
            len(attempts),
            failure.error_class,
            failure.message,
        )


def _document(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``, or None; no checks (the reader does those)."""
    first = text.find("{")
    if first < 0:
        return None
    try:
        doc, _ = json.JSONDecoder().raw_decode(text, first)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _protocol(doc: dict[str, Any] | None) -> str | None:
    test = ((doc or {}).get("start") or {}).get("test_start") or {}
    name = test.get("protocol")
    return name.lower() if isinstance(name, str) else None


def _interval_bytes(doc: dict[str, Any] | None) -> list[int]:
    """Bytes of each interval one side reports (empty without intervals)."""
    intervals = (doc or {}).get("intervals")
    found = []
    for interval in intervals if isinstance(intervals, list) else []:
        value = ((interval or {}).get("sum") or {}).get("bytes")
        if isinstance(value, int | float):
            found.append(int(value))
    return found


def _stalled(
    client: dict[str, Any] | None,
    server: dict[str, Any] | None,
    protocol: str | None,
    timed_out: bool,
) -> Failure | None:
    """A run whose sender sent while its receiver got nothing, or stopped getting."""
    end = (client or {}).get("end") or {}
    # A client stuck in a write can report an empty interval but its real
    # total in end.sum_sent.
    sent_end = (end.get("sum_sent") or {}).get("bytes")
    sent = max(
        sum(_interval_bytes(client)),
        int(sent_end) if isinstance(sent_end, int | float) else 0,
    )
    received = _interval_bytes(server)
    if not received and not timed_out:
        # The client's copy of the receiver's total comes with the results
        # exchange, which a run that hung never reached.
        received_end = (end.get("sum_received") or {}).get("bytes")
        if isinstance(received_end, int | float):
            received = [int(received_end)]
    if not received and protocol == "udp":
        # Before 3.11 a UDP client has no sum_received; its end.sum holds the
        # receiver's packet counts.
        summary = end.get("sum") or {}
        packets, lost = summary.get("packets"), summary.get("lost_packets")
        if isinstance(packets, int) and isinstance(lost, int) and lost >= packets > 0:
            received = [0]
    # A hung run whose receiver's last interval is empty, or which got well
    # under what was sent, stalled on the path: the first frames can pass
    # (segmentation offload) before the rest drop. A healthy path that hung
    # for another reason has delivered all but the send buffer, a sliver of a
    # test's bytes.
    stopped = (
        timed_out
        and bool(received)
        and (received[-1] == 0 or sum(received) < 0.9 * sent)
    )
    if not sent or not received or (sum(received) != 0 and not stopped):
        return None

    got = f"only {sum(received)} bytes" if sum(received) else "nothing"
    if protocol == "udp":
        return Failure(
            "udp-no-data",
            f"the client sent {sent} bytes of UDP but the receiver got {got} (a "
            "firewall dropping UDP, or frames larger than a device's MTU)",
        )
    return Failure(
        "mtu-blackhole",
        f"the client sent {sent} bytes of TCP but the receiver got {got}; large "
        "frames are dropped on the path, typically by a device with a smaller MTU",
    )
