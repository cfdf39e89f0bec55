"""Read iperf3's JSON output into one checked, flat result.

This module owns the translation from what an ``iperf3 -c ... -J`` client printed
(and, when given, its ``iperf3 -s -1 -J`` server) into an :class:`IperfResult`:
status, sent and received rates, CPU, UDP loss, and flags naming every oddity
found. It invents no figure: what the output lacks is None, and a failed result
carries no measurement. Differences handled, checked against iperf3's source,
release notes and issues (3.0 to 3.19):

- A top-level ``"error"`` (connection refused, server busy, control socket
  closed, interrupted) is "failed", even beside partial ``end`` data
  (``partial-end-data``). Empty or cut-short output, two documents back to back
  (3.16-3.17 can print the result twice, esnet/iperf#1716), or no ``start`` or
  ``end`` are "failed" with a sentence saying what is wrong. Text around one
  document (warnings went to stdout before 3.4) is skipped: ``text-around-json``.
- TCP/SCTP: sent from ``end.sum_sent``, received from ``end.sum_received``;
  3.0.0-3.0.2 wrote them only for -P > 1, so a lone stream's ``sender`` and
  ``receiver`` are read instead (``summary-from-streams``).
- UDP before 3.11: ``end.sum`` holds the sender's bytes and rate with the
  receiver's jitter and loss; no document has a receiver rate, and the server's
  ``end.sum`` says 0 bytes because it prints before the results exchange
  (esnet/iperf#314, #560). The received rate is the receiving side's non-omitted
  interval bytes over its ``end.sum.seconds``, which is iperf3's own receiver
  figure (``received-from-intervals``); that side is the server
  (``received-from-server-output``) or, with -R, the client. Without it the rate
  is None (``udp-receiver-rate-unknown``), never the sender's. 3.11+ writes UDP
  ``end.sum_sent``/``end.sum_received`` (esnet/iperf#1174), used when present.
- ``--bidir`` in 3.7-3.10 repeats ``sum``, ``sum_sent``, ``sum_received`` in one
  object (esnet/iperf#952); 3.11+ names the other direction ``*_bidir_reverse``.
  Repeated keys with differing values are flagged ``duplicate-keys`` and the
  first copy is kept: in bidir output that is client to server on both sides
  (``iperf_print_results`` walks those streams first), so the status stays
  "ok" and the figures describe that direction (``bidirectional``). Equal
  repeats (3.12 repeats ``sock_bufsize`` with -P) are ignored. A top-level
  ``start``, ``end`` or ``error`` repeated with different values is "failed".
- Numbers: before 3.2, cJSON printed doubles beyond 1e9 as ``%e`` (7 digits,
  ``old-float-format``), integral doubles as integers, and NaN/inf as bare
  ``nan``/``-nan``/``inf`` (invalid JSON); 3.2+ prints ``null``. Such figures are
  None with ``non-finite-number``; a non-number is None with ``invalid-number``.
- Sanity: ``lost_percent`` outside 0-100, negative lost packets (an --omit bug
  before 3.1.3), more lost than sent packets and negative rates are flagged and
  kept as iperf3 printed them.
"""

import json
import math
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["IperfResult", "parse_file", "parse_text"]

# Bare non-finite tokens of old cJSON, matched outside strings (the string
# alternative consumes quoted text whole, so "nan" inside a string survives).
_NON_FINITE = re.compile(
    r'"(?:[^"\\]|\\.)*"|(?<![\w.])(-?)(nan|inf(?:inity)?)(?![\w.])', re.IGNORECASE
)
_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?")
_SUMMARY_KEYS = ("sum_sent", "sum_received", "sum", "streams")


@dataclass(frozen=True)
class IperfResult:
    """One iperf3 run as read from its JSON: status, figures and oddities."""

    status: str
    error: str | None
    version: str | None
    protocol: str | None
    streams: int | None
    duration_s: float | None
    sent_bps: float | None
    received_bps: float | None
    retransmits: int | None
    cpu_host_pct: float | None
    cpu_remote_pct: float | None
    jitter_ms: float | None
    lost_packets: int | None
    packets: int | None
    lost_percent: float | None
    flags: tuple[str, ...]

    def to_record(self) -> dict[str, Any]:
        """Return a JSON-ready dict with exactly the result's fields."""
        record = {field.name: getattr(self, field.name) for field in fields(self)}
        record["flags"] = list(self.flags)
        return record


def parse_file(path: str | os.PathLike[str]) -> IperfResult:
    """Read an iperf3 client's JSON output from a file (OSError if unreadable)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return parse_text(text)


def parse_text(text: str, *, server_text: str | None = None) -> IperfResult:
    """Read an iperf3 client's JSON stdout, and optionally its server's."""
    flags: set[str] = set()
    try:
        doc, repeated = _decode(text, "iperf3 client output", flags)
    except _Unreadable as exc:
        return _result(flags, error=str(exc))

    start = _obj(doc.get("start"))
    end = _obj(doc.get("end"))
    meta = _metadata(start or {}, end or {}, flags)
    if repeated & {"sum", "sum_sent", "sum_received"}:
        flags.add("bidirectional")  # only 3.7-3.10 --bidir repeats these
    problem = None
    if "error" in doc:
        problem = str(doc["error"])
        if end or doc.get("intervals"):
            flags.add("partial-end-data")
    elif not start or not end:
        missing = " and ".join(repr(k) for k in ("start", "end") if not doc.get(k))
        problem = (
            f"The iperf3 JSON document has no (or an empty) {missing} object; iperf3 "
            "-J writes both for every finished test, so this run has no result."
        )
    elif not any(key in end for key in _SUMMARY_KEYS):
        problem = (
            "The iperf3 'end' object has none of 'sum_sent', 'sum_received', 'sum' "
            "or 'streams', so there is no summary to read."
        )
    if problem is not None or not start or not end:
        return _result(flags, error=problem, **meta)

    if meta["protocol"] == "udp":
        figures = _udp(doc, end, server_text, flags)
    else:
        figures = _tcp(end, flags)
    cpu = _obj(end.get("cpu_utilization_percent"))
    figures["cpu_host_pct"] = _number(cpu, "host_total", flags)
    figures["cpu_remote_pct"] = _number(cpu, "remote_total", flags)
    _check(figures, flags)
    return _result(flags, status="ok", **meta, **figures)


class _Unreadable(ValueError):
    """The text is not one iperf3 JSON document; the message says why."""


def _decode(text: str, what: str, flags: set[str]) -> tuple[dict[str, Any], set[str]]:
    """Decode exactly one JSON object; return it and its repeated key names."""
    if not text.strip():
        raise _Unreadable(
            f"The {what} is empty: iperf3 wrote nothing to stdout, so it was "
            "probably killed or crashed before printing its JSON; rerun the test."
        )
    clean = _NON_FINITE.sub(_finite_token, text)
    first = clean.find("{")
    if first < 0:
        raise _Unreadable(
            f"The {what} holds no JSON object (it begins {clean.strip()[:40]!r}); "
            "run iperf3 with -J."
        )

    repeated: set[str] = set()
    top: set[str] = set()

    def keep_first(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json keeps the last of repeated keys; keep the first and remember the
        # key when the copies differ (3.12 repeats equal sock_bufsize and such).
        nonlocal top
        obj: dict[str, Any] = {}
        top = set()  # the outermost object is built last, so this ends as its own
        for key, value in pairs:
            if key not in obj:
                obj[key] = value
            elif obj[key] != value:
                top.add(key)
        repeated.update(top)
        return obj

    def old_float(literal: str) -> float:
        # cJSON 1.5+ (iperf3 3.2+) uses exponents only below 1e-4 or from 1e15.
        value = float(literal)
        if "e" in literal.lower() and 1e-4 <= abs(value) < 1e15:
            flags.add("old-float-format")
        return value

    decoder = json.JSONDecoder(object_pairs_hook=keep_first, parse_float=old_float)
    try:
        doc, stop = decoder.raw_decode(clean, first)
    except json.JSONDecodeError as exc:
        raise _Unreadable(
            f"The {what} is not valid JSON ({exc.msg} at line {exc.lineno} column "
            f"{exc.colno}); it was probably cut short, so rerun the test."
        ) from exc

    rest = clean[stop:].lstrip()
    if rest.startswith("{"):
        line = clean.count("\n", 0, len(clean) - len(rest)) + 1
        raise _Unreadable(
            f"The {what} holds more than one JSON document (another starts at line "
            f"{line}) where exactly one was expected; iperf3 3.16 and 3.17 can print "
            "their result twice (esnet/iperf#1716), otherwise two runs shared a file."
        )
    ambiguous = sorted(top & {"start", "end", "error"})
    if ambiguous:
        raise _Unreadable(
            f"The {what} repeats the top-level key(s) {', '.join(ambiguous)}, and "
            "nothing tells which copy is right, so it is not read."
        )
    if rest or clean[:first].strip():
        flags.add("text-around-json")
    if repeated:
        flags.add("duplicate-keys")
    return doc, repeated


def _finite_token(match: re.Match[str]) -> str:
    """Rewrite old cJSON's bare nan/inf into the spelling Python's json reads."""
    if match.group(2) is None:
        return match.group(0)
    if match.group(2).lower() == "nan":
        return "NaN"
    return "-Infinity" if match.group(1) else "Infinity"


def _metadata(
    start: dict[str, Any], end: dict[str, Any], flags: set[str]
) -> dict[str, Any]:
    """Read version, protocol and stream count from ``start``."""
    test = _obj(start.get("test_start")) or {}
    version = start.get("version")
    found = _VERSION.search(version) if isinstance(version, str) else None
    protocol = test.get("protocol")
    if test.get("bidir") == 1 or any(key.endswith("_bidir_reverse") for key in end):
        flags.add("bidirectional")
    if "accepted_connection" in start:
        flags.add("server-side-output")  # a server's JSON read as if a client's
    return {
        "version": found.group(0) if found else None,
        "protocol": protocol.lower() if isinstance(protocol, str) else None,
        "streams": _number(test, "num_streams", flags, integer=True),
    }


def _tcp(end: dict[str, Any], flags: set[str]) -> dict[str, Any]:
    """TCP and SCTP: sent from sum_sent, received from sum_received."""
    sent = _obj(end.get("sum_sent"))
    received = _obj(end.get("sum_received"))
    streams = end.get("streams")
    lone = streams[0] if isinstance(streams, list) and len(streams) == 1 else None
    if sent is None and received is None and isinstance(lone, dict):
        sent = _obj(lone.get("sender"))
        received = _obj(lone.get("receiver"))
        flags.add("summary-from-streams")
    return {
        "duration_s": _number(sent or received, "seconds", flags),
        "sent_bps": _number(sent, "bits_per_second", flags),
        "received_bps": _number(received, "bits_per_second", flags),
        "retransmits": _number(sent, "retransmits", flags, integer=True),
    }


def _udp(
    doc: dict[str, Any], end: dict[str, Any], server_text: str | None, flags: set[str]
) -> dict[str, Any]:
    """UDP: the received rate only ever comes from the receiving side's view."""
    legacy = _obj(end.get("sum"))
    sent = _obj(end.get("sum_sent")) or legacy
    received = _obj(end.get("sum_received"))
    loss = received or legacy
    figures: dict[str, Any] = {
        "duration_s": _number(sent, "seconds", flags),
        "sent_bps": _number(sent, "bits_per_second", flags),
        "received_bps": _number(received, "bits_per_second", flags),
        "jitter_ms": _number(loss, "jitter_ms", flags),
        "lost_packets": _number(loss, "lost_packets", flags, integer=True),
        "packets": _number(loss, "packets", flags, integer=True),
        "lost_percent": _number(loss, "lost_percent", flags),
    }
    if received is None:
        test = _obj(doc["start"].get("test_start")) or {}
        if test.get("reverse") == 1:  # the client itself received
            figures["received_bps"] = _receiver_rate(doc, flags)
        else:
            peer = _server_doc(doc, server_text, flags)
            rate = _receiver_rate(peer, flags) if peer else None
            if rate is not None:
                flags.add("received-from-server-output")
            figures["received_bps"] = rate
        if figures["received_bps"] is None:
            flags.add("udp-receiver-rate-unknown")
    return figures


def _server_doc(
    doc: dict[str, Any], server_text: str | None, flags: set[str]
) -> dict[str, Any] | None:
    """The matching server's JSON: server_text first, then server_output_json."""
    server = None
    if server_text is not None:
        try:
            server, _ = _decode(server_text, "iperf3 server output", flags)
        except _Unreadable:
            flags.add("server-output-unusable")
    if server is None:
        server = _obj(doc.get("server_output_json"))
    if server is None:
        return None
    if "error" in server:
        flags.add("server-output-error")
        return None
    cookie = doc["start"].get("cookie")
    server_cookie = (_obj(server.get("start")) or {}).get("cookie")
    if cookie and server_cookie and cookie != server_cookie:
        flags.add("server-output-mismatch")
        return None
    return server


def _receiver_rate(doc: dict[str, Any], flags: set[str]) -> float | None:
    """The receiving side's own rate: its sum_received, else its intervals."""
    end = _obj(doc.get("end")) or {}
    received = _obj(end.get("sum_received"))
    if received is not None:
        return _number(received, "bits_per_second", flags)
    intervals = doc.get("intervals")
    if "bidirectional" in flags or not isinstance(intervals, list):
        # Interval sums of 3.7-3.10 --bidir repeat keys for both directions.
        return None

    total, seconds, used = 0, 0.0, 0
    for interval in intervals:
        block = _interval_sum(interval)
        if block is None or block.get("sender") is True:
            return None  # no sum to read, or these are the sender's intervals
        if block.get("omitted") is True:
            continue
        size = _number(block, "bytes", flags, integer=True)
        span = _number(block, "seconds", flags)
        if size is None or span is None:
            return None
        total, seconds, used = total + size, seconds + span, used + 1

    # iperf3's receiver line divides by the receiver's duration, end.sum.seconds.
    duration = _number(_obj(end.get("sum")), "seconds", flags) or seconds
    if not used or duration <= 0:
        return None
    flags.add("received-from-intervals")
    return total * 8 / duration


def _interval_sum(interval: Any) -> dict[str, Any] | None:
    """An interval's sum, or its only stream (3.0.0-3.0.2 with one stream)."""
    if not isinstance(interval, dict):
        return None
    block = _obj(interval.get("sum"))
    streams = interval.get("streams")
    if block is None and isinstance(streams, list) and len(streams) == 1:
        block = _obj(streams[0])
    return block


def _check(figures: dict[str, Any], flags: set[str]) -> None:
    """Flag figures that no correct iperf3 run can produce."""
    percent = figures.get("lost_percent")
    lost = figures.get("lost_packets")
    packets = figures.get("packets")
    if percent is not None and not 0 <= percent <= 100:
        flags.add("lost-percent-out-of-range")
    if lost is not None and lost < 0:
        flags.add("negative-lost-packets")
    if lost is not None and packets is not None and 0 <= packets < lost:
        flags.add("lost-exceeds-packets")
    rates = (figures.get("sent_bps"), figures.get("received_bps"))
    if any(rate is not None and rate < 0 for rate in rates):
        flags.add("negative-rate")


def _number(
    block: dict[str, Any] | None, key: str, flags: set[str], *, integer: bool = False
) -> Any:
    """A finite number from block[key], as int or float; None when absent."""
    if block is None or key not in block:
        return None
    value = block[key]
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        flags.add("non-finite-number")  # null (3.2+) or bare nan/inf (older)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        flags.add("invalid-number")
        return None
    if integer:
        if value != int(value):
            flags.add("invalid-number")
            return None
        return int(value)
    return float(value)  # old cJSON printed integral doubles as integers


def _obj(value: Any) -> dict[str, Any] | None:
    """``value`` if it is a JSON object, else None."""
    return value if isinstance(value, dict) else None


def _result(flags: set[str], *, status: str = "failed", **values: Any) -> IperfResult:
    """Build a result; every figure not given is None."""
    known: dict[str, Any] = {field.name: None for field in fields(IperfResult)}
    known.update(values, status=status, flags=tuple(sorted(flags)))
    return IperfResult(**known)
