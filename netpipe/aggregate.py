"""From raw cell result files to one frame of pairs and a summary per matrix point.

This module owns the aggregate step of the flow: it reads every
``results/raw/<topology>/<backend>/<driver>/<protocol>/mtu<M>/pairs<N>/rep<R>.json``,
re-parses each pair's stored iperf3 output with ``netpipe.iperf.reader`` (so a
reader fix applies without measuring again), and writes
``results/cells.parquet`` (one row per pair per cell) and
``results/summary.csv`` (one row per topology, backend, driver, protocol, MTU and pair
count, over its repetitions). A cell that failed or was skipped keeps its row,
status and reason; its throughput is null, never zero.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from scipy import stats

from netpipe.atomic import write_atomic
from netpipe.errors import NetpipeError
from netpipe.iperf.reader import parse_text

log = logging.getLogger(__name__)

CELL_FORMAT = "netpipe-cell/1"
CELL_STATUSES = ("ok", "failed", "skipped")
COORDINATES = ("topology", "backend", "driver", "protocol", "mtu", "pairs")
PROVENANCE_KEYS = (
    *("kernel", "iperf3_version", "cpu_model", "cpu_count"),
    *("hostname", "netpipe_version", "python"),
)

# Parsed iperf3 fields whose plain name would clash with a cell-level column.
_RENAMED_FIELDS = {
    "status": "pair_status",
    "error": "pair_error",
    "version": "iperf_version",
    "protocol": "iperf_protocol",
    "duration_s": "measured_s",
}
# Pair keys of the result file copied to columns as they are.
_PAIR_KEYS = (
    *("server_netns", "client_netns", "server_address", "client_address"),
    *("port", "client_start", "client_returncode"),
)

_TEXT, _INT, _FLOAT = pl.String(), pl.Int64(), pl.Float64()

# One row per pair. The cell-level columns repeat on each row of the cell,
# which parquet's dictionary encoding stores once.
CELLS_SCHEMA: dict[str, pl.DataType] = {
    **dict.fromkeys(["path", "topology", "backend", "driver", "protocol"], _TEXT),
    **dict.fromkeys(["mtu", "pairs", "rep"], _INT),
    **dict.fromkeys(["status", "reason", "error_class"], _TEXT),
    "attempts": _INT,
    "attempt_log": _TEXT,
    **dict.fromkeys(["started_at", "ended_at"], pl.Datetime("us", "UTC")),
    "cell_duration_s": _FLOAT,
    **dict.fromkeys(["kernel", "iperf3_version", "cpu_model"], _TEXT),
    "cpu_count": _INT,
    **dict.fromkeys(["hostname", "netpipe_version", "python"], _TEXT),
    **dict.fromkeys(["settings", "driver_settings"], _TEXT),
    "pair": _INT,
    **dict.fromkeys(["server_netns", "client_netns"], _TEXT),
    **dict.fromkeys(["server_address", "client_address"], _TEXT),
    **dict.fromkeys(["port", "client_returncode"], _INT),
    "client_start": _FLOAT,
    **dict.fromkeys(["pair_status", "pair_error"], _TEXT),
    **dict.fromkeys(["iperf_version", "iperf_protocol"], _TEXT),
    "streams": _INT,
    **dict.fromkeys(["measured_s", "sent_bps", "received_bps"], _FLOAT),
    "retransmits": _INT,
    **dict.fromkeys(["cpu_host_pct", "cpu_remote_pct", "jitter_ms"], _FLOAT),
    **dict.fromkeys(["lost_packets", "packets"], _INT),
    "lost_percent": _FLOAT,
    "flags": pl.List(_TEXT),
}

# One row per topology, driver, protocol, MTU and pair count.
SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    **{name: CELLS_SCHEMA[name] for name in COORDINATES},
    **dict.fromkeys(["reps_total", "reps_ok", "reps_failed"], _INT),
    **dict.fromkeys(["reps_skipped", "reps_incomplete"], _INT),
    **dict.fromkeys(["throughput_bps_mean", "throughput_bps_std"], _FLOAT),
    **dict.fromkeys(["throughput_bps_se"], _FLOAT),
    **dict.fromkeys(["throughput_bps_ci95_low", "throughput_bps_ci95_high"], _FLOAT),
    **dict.fromkeys(["cpu_host_pct_mean", "retransmits_mean"], _FLOAT),
    **dict.fromkeys(["lost_percent_mean", "jitter_ms_mean"], _FLOAT),
    "start_spread_s_mean": _FLOAT,
}


def find_cells(raw_dir: str | Path) -> list[Path]:
    """List the cell result files under a ``results/raw`` folder, sorted."""
    return sorted(Path(raw_dir).glob("*/*/*/*/mtu*/pairs*/rep*.json"))


def read_cells(paths: Iterable[str | Path]) -> pl.DataFrame:
    """Read cell result files into one row per pair; a cell without pairs gets one."""
    columns: dict[str, list[Any]] = {name: [] for name in CELLS_SCHEMA}
    seen: dict[tuple[Any, ...], Path] = {}

    for path in dict.fromkeys(Path(p) for p in paths):
        doc = _load(path)
        cell = _cell_columns(path, doc)
        key = tuple(cell[name] for name in (*COORDINATES, "rep"))
        if key in seen:
            raise NetpipeError(
                f"Result files {seen[key]} and {path} both hold cell {key}; "
                "remove the stale one and aggregate again."
            )
        seen[key] = path

        records = [_pair_columns(path, pair) for pair in doc["pairs"]] or [{}]
        indices = [record.get("pair") for record in records]
        if len(set(indices)) != len(indices):
            raise NetpipeError(
                f"Result file {path} lists pair indices {indices}, which repeat; "
                "expected each pair once. Delete the file and measure it again."
            )
        for record in records:
            row = {**cell, **record}
            for name, values in columns.items():
                values.append(row.get(name))

    frame = pl.DataFrame(columns, schema=CELLS_SCHEMA)
    return frame.sort([*COORDINATES, "rep", "pair"], nulls_last=True)


def summarise(cells: pl.DataFrame) -> pl.DataFrame:
    """Summarise the pair rows per topology, driver, protocol, MTU and pair count."""
    reps = _per_rep(cells)
    measured = pl.col("measured")

    summary = reps.group_by(COORDINATES).agg(
        pl.len().alias("reps_total"),
        measured.sum().alias("reps_ok"),
        (pl.col("status") == "failed").sum().alias("reps_failed"),
        (pl.col("status") == "skipped").sum().alias("reps_skipped"),
        ((pl.col("status") == "ok") & ~measured).sum().alias("reps_incomplete"),
        # total is null for every rep that is not measured, so these see only
        # measured reps; an all-null group gives null, not zero.
        pl.col("total_bps").mean().alias("throughput_bps_mean"),
        pl.col("total_bps").std(ddof=1).alias("throughput_bps_std"),
        pl.col("cpu_host_pct").filter(measured).mean().alias("cpu_host_pct_mean"),
        pl.col("retransmits").filter(measured).mean().alias("retransmits_mean"),
        pl.col("lost_percent").filter(measured).mean().alias("lost_percent_mean"),
        pl.col("jitter_ms").filter(measured).mean().alias("jitter_ms_mean"),
        pl.col("start_spread_s").filter(measured).mean().alias("start_spread_s_mean"),
    )

    se = pl.col("throughput_bps_std") / pl.col("reps_ok").cast(pl.Float64).sqrt()
    t95 = pl.Series("t95", _t_quantiles(summary["reps_ok"].to_list()), pl.Float64)
    summary = (
        summary.with_columns(t95)
        .with_columns(se.alias("throughput_bps_se"))
        .with_columns(
            (
                pl.col("throughput_bps_mean")
                - pl.col("t95") * pl.col("throughput_bps_se")
            ).alias("throughput_bps_ci95_low"),
            (
                pl.col("throughput_bps_mean")
                + pl.col("t95") * pl.col("throughput_bps_se")
            ).alias("throughput_bps_ci95_high"),
        )
    )
    return summary.select(
        pl.col(name).cast(dtype) for name, dtype in SUMMARY_SCHEMA.items()
    ).sort(COORDINATES)


def unmeasured_cells(cells: pl.DataFrame) -> pl.DataFrame:
    """List the cells without a measured total throughput, with status and reason."""
    reps = _per_rep(cells).filter(~pl.col("measured"))

    # An "ok" cell whose stored output no longer parses (or lacks a pair) is
    # reported as incomplete rather than folded into failed.
    status = (
        pl.when(pl.col("status") == "ok")
        .then(pl.lit("incomplete"))
        .otherwise(pl.col("status"))
    )
    shortfall = pl.format(
        "only {} of {} pairs have a measured rate", pl.col("known"), pl.col("pairs")
    )
    reason = pl.coalesce(pl.col("reason"), pl.col("pair_errors"), shortfall)

    return reps.select(
        *COORDINATES,
        "rep",
        status.alias("status"),
        "error_class",
        reason.alias("reason"),
        "path",
    ).sort([*COORDINATES, "rep"])


def retried_cells(cells: pl.DataFrame) -> pl.DataFrame:
    """List the cells iperf3 was run more than once for, with every attempt."""
    return (
        cells.filter(pl.col("attempts") > 1)
        .unique("path")
        .select(
            *COORDINATES,
            "rep",
            "status",
            "attempts",
            "error_class",
            "attempt_log",
        )
        .sort([*COORDINATES, "rep"])
    )


def _attempt_columns(attempts: Any) -> dict[str, Any]:
    """How many times iperf3 ran for a cell, and a line per failed attempt."""
    if not isinstance(attempts, list) or not attempts:
        return {"attempts": None, "attempt_log": None}
    lines = [
        f"attempt {a.get('attempt')}: {a.get('error_class')}: {a.get('message')}"
        for a in attempts
        if isinstance(a, dict) and a.get("status") != "ok"
    ]
    return {"attempts": len(attempts), "attempt_log": "; ".join(lines) or None}


def aggregate(
    paths: Iterable[str | Path], parquet_out: str | Path, csv_out: str | Path
) -> pl.DataFrame:
    """Aggregate cell files into cells.parquet and summary.csv; return the summary."""
    cells = read_cells(paths)
    summary = summarise(cells)

    write_atomic(parquet_out, cells.write_parquet)
    write_atomic(csv_out, summary.write_csv)

    counts = dict(cells.unique("path").group_by("status").len().iter_rows())
    log.info(
        "aggregated %d cell files (%d ok, %d failed, %d skipped) into %s and %s",
        sum(counts.values()),
        counts.get("ok", 0),
        counts.get("failed", 0),
        counts.get("skipped", 0),
        parquet_out,
        csv_out,
    )
    return summary


def _per_rep(cells: pl.DataFrame) -> pl.DataFrame:
    """Collapse pair rows into one row per cell: total rate, means, start spread."""
    pair_ok = pl.col("pair_status") == "ok"
    known = pl.col("received_bps").filter(pair_ok).count()
    pair_errors = (
        pl.format(
            "pair {}: {}",
            pl.col("pair"),
            pl.col("pair_error").fill_null("no error recorded"),
        )
        .filter(pl.col("pair").is_not_null() & ~pair_ok.fill_null(False))
        .str.join("; ")
    )
    complete_retransmits = pl.col("retransmits").count() == pl.col("pairs").first()

    reps = cells.group_by([*COORDINATES, "rep"]).agg(
        pl.col("path").first(),
        pl.col("status").first(),
        pl.col("reason").first(),
        pl.col("error_class").first(),
        known.alias("known"),
        pl.col("received_bps").filter(pair_ok).sum().alias("sum_bps"),
        pl.col("cpu_host_pct").mean(),
        pl.when(complete_retransmits)
        .then(pl.col("retransmits").sum())
        .alias("retransmits"),
        pl.col("lost_percent").mean(),
        pl.col("jitter_ms").mean(),
        (pl.col("client_start").max() - pl.col("client_start").min()).alias(
            "start_spread_s"
        ),
        pair_errors.alias("pair_errors"),
    )

    # A rep counts only when the cell ran and every one of its pairs has a
    # known received rate; polars sums an all-null column to 0, so the total
    # is set only for those reps.
    measured = (pl.col("status") == "ok") & (pl.col("known") == pl.col("pairs"))
    return reps.with_columns(
        measured.alias("measured"),
        pl.when(measured).then(pl.col("sum_bps")).alias("total_bps"),
        pl.col("pair_errors").replace("", None),
    )


def _t_quantiles(counts: list[int]) -> list[float | None]:
    """Two-sided 95 % Student t quantiles for samples of the given sizes."""
    return [float(stats.t.ppf(0.975, n - 1)) if n >= 2 else None for n in counts]


def _load(path: Path) -> dict[str, Any]:
    """Read one result file and check its format marker and top-level shape."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NetpipeError(f"Cannot read result file {path}: {exc.strerror}.") from exc
    except ValueError as exc:
        raise NetpipeError(
            f"Result file {path} is not valid JSON ({exc}); delete it so that "
            "its cell is measured again."
        ) from exc

    if not isinstance(doc, dict) or doc.get("format") != CELL_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise NetpipeError(
            f"Result file {path} has format {found!r}, expected {CELL_FORMAT!r}; "
            "it was not written by this netpipe version or is not a cell file."
        )
    for key, kind in (("cell", dict), ("pairs", list), ("status", str)):
        if not isinstance(doc.get(key), kind):
            raise NetpipeError(
                f"Result file {path} has {key} = {doc.get(key)!r}, expected a "
                f"{kind.__name__}; delete it so that its cell is measured again."
            )
    if doc["status"] not in CELL_STATUSES:
        raise NetpipeError(
            f"Result file {path} has status {doc['status']!r}, expected one of "
            f"{', '.join(CELL_STATUSES)}."
        )
    return doc


def _cell_columns(path: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """The cell-level columns of one result file, with its coordinates checked."""
    # Files written before the backend dimension existed are netns cells.
    cell = {"backend": "netns", **doc["cell"]}
    for key in COORDINATES[:4]:
        if not isinstance(cell.get(key), str) or not cell[key]:
            raise NetpipeError(
                f"Result file {path} has cell.{key} = {cell.get(key)!r}, "
                "expected a non-empty string."
            )
    for key in ("mtu", "pairs", "rep"):
        value = cell.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NetpipeError(
                f"Result file {path} has cell.{key} = {value!r}, "
                "expected a positive integer."
            )
    if len(doc["pairs"]) > cell["pairs"]:
        raise NetpipeError(
            f"Result file {path} holds {len(doc['pairs'])} pairs but its cell has "
            f"pairs = {cell['pairs']}; the file is inconsistent, measure it again."
        )
    _check_location(path, cell)

    provenance = doc.get("provenance") or {}
    return {
        "path": str(path),
        **{key: cell[key] for key in (*COORDINATES, "rep")},
        "status": doc["status"],
        "reason": doc.get("reason"),
        "error_class": doc.get("error_class"),
        **_attempt_columns(doc.get("attempts")),
        "started_at": _timestamp(path, "started_at", doc.get("started_at")),
        "ended_at": _timestamp(path, "ended_at", doc.get("ended_at")),
        "cell_duration_s": doc.get("duration_s"),
        **{key: provenance.get(key) for key in PROVENANCE_KEYS},
        "settings": json.dumps(doc.get("settings"), sort_keys=True),
        "driver_settings": json.dumps(doc.get("driver"), sort_keys=True),
    }


def _pair_columns(path: Path, pair: dict[str, Any]) -> dict[str, Any]:
    """The pair-level columns: what was run, and its re-parsed iperf3 output."""
    row = {key: pair.get(key) for key in _PAIR_KEYS}
    row["pair"] = pair.get("index")
    if not isinstance(row["pair"], int):
        raise NetpipeError(
            f"Result file {path} has a pair with index {row['pair']!r}, "
            "expected an integer."
        )

    stdout = pair.get("client_stdout")
    if not stdout:
        row["pair_status"] = "failed"
        row["pair_error"] = "the iperf3 client left no output"
        return row

    record = parse_text(stdout, server_text=pair.get("server_stdout")).to_record()
    for field, value in record.items():
        row[_RENAMED_FIELDS.get(field, field)] = value
    row["flags"] = list(record.get("flags") or ())
    return row


def _check_location(path: Path, cell: dict[str, Any]) -> None:
    """Refuse a file whose results/raw location names another cell than its content."""
    expected = (
        *(cell["topology"], cell["backend"], cell["driver"], cell["protocol"]),
        *(f"mtu{cell['mtu']}", f"pairs{cell['pairs']}", f"rep{cell['rep']}.json"),
    )
    parts = path.parts[-len(expected) :]
    laid_out = len(parts) == len(expected) and bool(
        re.fullmatch(r"mtu\d+/pairs\d+/rep\d+\.json", "/".join(parts[-3:]))
    )
    if laid_out and parts != expected:
        raise NetpipeError(
            f"Result file {path} holds cell {'/'.join(expected)}, which belongs at "
            "another path; it was moved or copied by hand, delete it or put it back."
        )


def _timestamp(path: Path, key: str, value: object) -> datetime | None:
    """Parse an ISO 8601 timestamp with a UTC offset from a result file."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise NetpipeError(
            f"Result file {path} has {key} = {value!r}, expected an ISO 8601 "
            "timestamp with a UTC offset such as 2026-12-03T15:40:00+00:00."
        )
    return moment
