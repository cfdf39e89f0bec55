"""Tests of netpipe.aggregate on cell files that hold real iperf3 3.12 output."""

import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from netpipe.aggregate import (
    CELLS_SCHEMA,
    SUMMARY_SCHEMA,
    aggregate,
    find_cells,
    read_cells,
    retried_cells,
    summarise,
    unmeasured_cells,
)
from netpipe.atomic import write_atomic
from netpipe.errors import NetpipeError

RAW = Path(__file__).parent / "data" / "cells" / "raw"
COORDS = ("topology", "backend", "driver", "protocol", "mtu", "pairs")


@pytest.fixture(scope="module")
def paths() -> list[Path]:
    found = find_cells(RAW)
    assert len(found) >= 10
    return found


@pytest.fixture(scope="module")
def docs(paths):
    return [json.loads(p.read_text()) for p in paths]


@pytest.fixture(scope="module")
def cells(paths) -> pl.DataFrame:
    return read_cells(paths)


@pytest.fixture(scope="module")
def summary(cells) -> pl.DataFrame:
    return summarise(cells)


def key_of(doc) -> tuple:
    return tuple(doc["cell"][k] for k in COORDS)


def row_of(summary: pl.DataFrame, key: tuple) -> dict:
    rows = summary.filter(
        *(pl.col(name) == value for name, value in zip(COORDS, key, strict=True))
    ).to_dicts()
    assert len(rows) == 1, key
    return rows[0]


def client_end(pair) -> dict:
    return json.loads(pair["client_stdout"])["end"]


def measured(pair) -> bool:
    """Whether a fixture pair's client output is whole JSON without an error."""
    try:
        return "error" not in json.loads(pair["client_stdout"] or "")
    except ValueError:
        return False


def measured_reps(docs) -> dict[tuple, list[dict]]:
    """The ok fixture cells whose every pair measured, by matrix point."""
    reps = defaultdict(list)
    for doc in docs:
        if doc["status"] == "ok" and all(measured(p) for p in doc["pairs"]):
            reps[key_of(doc)].append(doc)
    return reps


def cell_row(**values) -> dict:
    """One pair row of the cells frame with every column present."""
    row = dict.fromkeys(CELLS_SCHEMA)
    defaults = {
        "topology": "local",
        "backend": "netns",
        "driver": "veth-bridge",
        "protocol": "tcp",
    }
    row.update(defaults, mtu=1500, pairs=1, rep=1, status="ok", pair=0)
    row.update(pair_status="ok", path="synthetic")
    row.update(values)
    return row


def test_read_cells_gives_a_row_per_pair_and_one_for_a_cell_without_pairs(docs, cells):
    assert cells.schema == pl.Schema(CELLS_SCHEMA)
    assert cells.height == sum(max(1, len(doc["pairs"])) for doc in docs)

    skipped = cells.filter(pl.col("status") == "skipped")
    assert skipped.height == 1
    assert skipped["pair"].to_list() == [None]
    assert skipped["received_bps"].to_list() == [None]
    assert skipped["reason"].item().startswith("ipvlan is not available")


def test_read_cells_keeps_client_start_provenance_and_parsed_fields(docs, cells):
    doc = next(d for d in docs if d["cell"]["pairs"] == 2 and d["status"] == "ok")
    rows = cells.filter(pl.col("path").str.ends_with(doc_path_tail(doc))).sort("pair")

    assert rows["client_start"].to_list() == [p["client_start"] for p in doc["pairs"]]
    assert rows["kernel"].unique().to_list() == [doc["provenance"]["kernel"]]
    assert rows["hostname"].unique().to_list() == [doc["provenance"]["hostname"]]
    sent = [client_end(p)["sum_sent"]["bits_per_second"] for p in doc["pairs"]]
    assert rows["sent_bps"].to_list() == pytest.approx(sent)
    assert set(rows["iperf_version"].to_list()) == {"3.12"}


def doc_path_tail(doc) -> str:
    c = doc["cell"]
    return "/".join(
        (
            c["topology"],
            c["backend"],
            c["driver"],
            c["protocol"],
            f"mtu{c['mtu']}",
            f"pairs{c['pairs']}",
            f"rep{c['rep']}.json",
        )
    )


def test_total_throughput_is_the_mean_over_reps_of_summed_received_rates(docs, summary):
    reps = measured_reps(docs)
    assert len(reps) >= 4

    for key, rep_docs in reps.items():
        totals = [
            sum(client_end(p)["sum_received"]["bits_per_second"] for p in d["pairs"])
            for d in rep_docs
        ]
        row = row_of(summary, key)
        assert row["reps_ok"] == len(totals)
        assert row["throughput_bps_mean"] == pytest.approx(
            statistics.fmean(totals), rel=1e-12
        )
        if len(totals) > 1:
            std = statistics.stdev(totals)
            assert row["throughput_bps_std"] == pytest.approx(std, rel=1e-9)


def test_udp_total_is_the_receivers_rate_not_the_senders(docs, summary):
    udp = next(
        d
        for d in docs
        if d["cell"]["protocol"] == "udp"
        and client_end(d["pairs"][0])["sum"]["lost_packets"]
    )
    end = client_end(udp["pairs"][0])
    assert end["sum_sent"]["bits_per_second"] > end["sum_received"]["bits_per_second"]

    reps = measured_reps(docs)[key_of(udp)]
    received = [
        client_end(d["pairs"][0])["sum_received"]["bits_per_second"] for d in reps
    ]
    row = row_of(summary, key_of(udp))
    assert row["throughput_bps_mean"] == pytest.approx(statistics.fmean(received))


def test_failed_and_skipped_cells_never_count_as_zero(docs, cells, summary):
    failed_only = row_of(summary, ("local", "netns", "macvlan-bridge", "tcp", 1500, 2))
    assert failed_only["reps_failed"] == 1
    assert failed_only["reps_ok"] == 0
    assert failed_only["throughput_bps_mean"] is None

    skipped_only = row_of(summary, ("local", "netns", "ipvlan-l3", "tcp", 1500, 1))
    assert skipped_only["reps_skipped"] == 1
    assert skipped_only["throughput_bps_mean"] is None
    assert skipped_only["cpu_host_pct_mean"] is None

    # Two ok reps and one failed rep whose first pair did measure: the mean is
    # over the two ok reps only, neither lowered by a zero nor raised by a part.
    key = ("local", "netns", "veth-bridge", "tcp", 1500, 2)
    mixed = row_of(summary, key)
    ok_totals = [
        sum(client_end(p)["sum_received"]["bits_per_second"] for p in d["pairs"])
        for d in measured_reps(docs)[key]
    ]
    assert (mixed["reps_total"], mixed["reps_ok"], mixed["reps_failed"]) == (3, 2, 1)
    assert mixed["throughput_bps_mean"] == pytest.approx(statistics.fmean(ok_totals))

    assert summary.filter(pl.col("throughput_bps_mean") == 0).height == 0


def test_an_ok_cell_whose_stored_output_no_longer_parses_is_incomplete(summary):
    row = row_of(summary, ("local", "netns", "macvlan-bridge", "tcp", 1500, 1))
    assert row["reps_incomplete"] == 1
    assert row["reps_ok"] == 0
    assert row["throughput_bps_mean"] is None


def test_cpu_retransmits_loss_jitter_and_start_spread_come_from_the_samples(
    docs, summary
):
    for key, rep_docs in measured_reps(docs).items():
        row = row_of(summary, key)
        ends = [[client_end(p) for p in d["pairs"]] for d in rep_docs]
        cpu = [
            statistics.fmean(e["cpu_utilization_percent"]["host_total"] for e in rep)
            for rep in ends
        ]
        spread = [
            max(p["client_start"] for p in d["pairs"])
            - min(p["client_start"] for p in d["pairs"])
            for d in rep_docs
        ]
        assert row["cpu_host_pct_mean"] == pytest.approx(statistics.fmean(cpu))
        assert row["start_spread_s_mean"] == pytest.approx(statistics.fmean(spread))

        if key[3] == "tcp":
            retransmits = [
                sum(e["sum_sent"]["retransmits"] for e in rep) for rep in ends
            ]
            assert row["retransmits_mean"] == pytest.approx(
                statistics.fmean(retransmits)
            )
            assert row["lost_percent_mean"] is None
        else:
            loss = [
                statistics.fmean(e["sum_received"]["lost_percent"] for e in rep)
                for rep in ends
            ]
            jitter = [
                statistics.fmean(e["sum_received"]["jitter_ms"] for e in rep)
                for rep in ends
            ]
            assert row["lost_percent_mean"] == pytest.approx(statistics.fmean(loss))
            assert row["jitter_ms_mean"] == pytest.approx(statistics.fmean(jitter))
            assert row["retransmits_mean"] is None


def test_standard_error_and_95_percent_interval_match_scipy():
    totals = [9.1e9, 9.6e9, 8.7e9, 10.2e9, 9.9e9]
    rows = [
        cell_row(rep=rep, pairs=2, pair=pair, received_bps=total / 2)
        for rep, total in enumerate(totals, start=1)
        for pair in (0, 1)
    ]
    summary = summarise(pl.DataFrame(rows, schema=CELLS_SCHEMA))
    row = summary.to_dicts()[0]

    sem = stats.sem(totals)
    low, high = stats.t.interval(0.95, len(totals) - 1, loc=np.mean(totals), scale=sem)
    assert row["reps_ok"] == 5
    assert row["throughput_bps_mean"] == pytest.approx(np.mean(totals))
    assert row["throughput_bps_std"] == pytest.approx(np.std(totals, ddof=1))
    assert row["throughput_bps_se"] == pytest.approx(sem)
    assert row["throughput_bps_ci95_low"] == pytest.approx(low)
    assert row["throughput_bps_ci95_high"] == pytest.approx(high)


def test_a_single_measured_rep_has_a_mean_but_no_spread_or_interval():
    summary = summarise(pl.DataFrame([cell_row(received_bps=5e9)], schema=CELLS_SCHEMA))
    row = summary.to_dicts()[0]
    assert row["throughput_bps_mean"] == 5e9
    for name in ("std", "se", "ci95_low", "ci95_high"):
        assert row[f"throughput_bps_{name}"] is None


def test_a_rep_with_one_unknown_pair_rate_has_no_total():
    rows = [
        cell_row(rep=1, pairs=2, pair=0, received_bps=4e9),
        cell_row(rep=1, pairs=2, pair=1, received_bps=None, flags=["rate-unknown"]),
        cell_row(rep=2, pairs=2, pair=0, received_bps=3e9),
        cell_row(rep=2, pairs=2, pair=1, received_bps=3e9),
    ]
    frame = pl.DataFrame(rows, schema=CELLS_SCHEMA)
    row = summarise(frame).to_dicts()[0]
    assert (row["reps_ok"], row["reps_incomplete"]) == (1, 1)
    assert row["throughput_bps_mean"] == 6e9

    listed = unmeasured_cells(frame).to_dicts()
    assert [(r["rep"], r["status"]) for r in listed] == [(1, "incomplete")]
    assert listed[0]["reason"] == "only 1 of 2 pairs have a measured rate"


def test_unmeasured_cells_lists_every_failed_skipped_and_incomplete_cell(docs, cells):
    listed = unmeasured_cells(cells)
    by_status = defaultdict(list)
    for row in listed.iter_rows(named=True):
        by_status[row["status"]].append(row)

    failed = [d for d in docs if d["status"] == "failed"]
    assert len(by_status["failed"]) == len(failed)
    assert {r["reason"] for r in by_status["failed"]} == {d["reason"] for d in failed}
    assert {r["error_class"] for r in by_status["failed"]} == {
        "timeout",
        "iperf3-error",
    }
    assert len(by_status["skipped"]) == 1
    assert len(by_status["incomplete"]) == 1
    assert "not valid JSON" in by_status["incomplete"][0]["reason"]
    assert all(r["reason"] for r in listed.iter_rows(named=True))


def test_aggregate_writes_parquet_and_csv_that_read_back_equal(tmp_path, paths):
    out = tmp_path / "results"
    summary = aggregate(paths, out / "cells.parquet", out / "summary.csv")

    assert sorted(p.name for p in out.iterdir()) == ["cells.parquet", "summary.csv"]
    assert pl.read_parquet(out / "cells.parquet").equals(read_cells(paths))
    back = pl.read_csv(out / "summary.csv", schema=SUMMARY_SCHEMA)
    assert back.equals(summary)
    assert summary.schema == pl.Schema(SUMMARY_SCHEMA)


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "summary.csv"
    target.write_text("old\n")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert target.read_text() == "old\n"
    assert list(tmp_path.iterdir()) == [target]


def test_no_cell_files_give_empty_frames_with_their_schemas(tmp_path):
    cells = read_cells([])
    assert cells.height == 0 and cells.schema == pl.Schema(CELLS_SCHEMA)
    summary = summarise(cells)
    assert summary.height == 0 and summary.schema == pl.Schema(SUMMARY_SCHEMA)
    assert unmeasured_cells(cells).height == 0


def copy_cell(tmp_path: Path, name: str, change) -> Path:
    """Write a changed copy of an ok two-pair fixture cell under tmp_path."""
    source = RAW / "local/netns/veth-bridge/tcp/mtu1500/pairs2/rep1.json"
    doc = json.loads(source.read_text())
    change(doc)
    target = tmp_path / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc))
    return target


def test_a_file_of_another_format_is_refused_by_name(tmp_path):
    bad = copy_cell(tmp_path, "x.json", lambda d: d.update(format="other/2"))
    with pytest.raises(NetpipeError, match=r"x\.json has format 'other/2'"):
        read_cells([bad])


def test_invalid_json_is_refused_with_a_remedy(tmp_path):
    bad = tmp_path / "cut.json"
    bad.write_text('{"format": "netpipe-cell/1", "cell": {')
    with pytest.raises(NetpipeError, match=r"not valid JSON.*measured again"):
        read_cells([bad])


def test_a_file_at_another_cells_path_is_refused(tmp_path):
    wrong = "local/netns/veth-bridge/tcp/mtu9000/pairs4/rep7.json"
    moved = copy_cell(tmp_path / "raw", wrong, lambda d: None)
    with pytest.raises(NetpipeError, match="belongs at another path"):
        read_cells([moved])


def test_two_files_for_one_cell_are_refused(tmp_path):
    twin = copy_cell(tmp_path, "twin.json", lambda d: None)
    with pytest.raises(NetpipeError, match="both hold cell"):
        read_cells([RAW / "local/netns/veth-bridge/tcp/mtu1500/pairs2/rep1.json", twin])


def test_a_non_integer_coordinate_is_refused_naming_the_key(tmp_path):
    bad = copy_cell(tmp_path, "m.json", lambda d: d["cell"].update(mtu="1500"))
    with pytest.raises(NetpipeError, match=r"cell\.mtu = '1500'.*positive integer"):
        read_cells([bad])


def test_a_cell_without_client_output_is_failed_not_zero(tmp_path):
    def strip(doc):
        doc["status"] = "failed"
        for pair in doc["pairs"]:
            pair["client_stdout"] = None

    cells = read_cells([copy_cell(tmp_path, "none.json", strip)])
    assert set(cells["pair_status"].to_list()) == {"failed"}
    assert cells["received_bps"].null_count() == cells.height
    assert summarise(cells)["throughput_bps_mean"].to_list() == [None]


def with_attempts(
    tmp_path: Path, status: str, classes: list[str | None], rep: int
) -> Path:
    """A copy of a fixture cell of ``status`` whose iperf3 ran once per class."""
    source = next(
        p for p in find_cells(RAW) if json.loads(p.read_text())["status"] == status
    )
    doc = json.loads(source.read_text())
    doc["attempts"] = [
        {
            "attempt": i + 1,
            "status": "ok" if name is None else "failed",
            "error_class": name,
            "message": None if name is None else f"iperf3 said: {name} here",
        }
        for i, name in enumerate(classes)
    ]
    if status == "failed":
        doc["error_class"] = classes[-1]
    doc["cell"]["rep"] = rep
    target = tmp_path / "raw" / source.relative_to(RAW).parent / f"rep{rep}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc))
    return target


def test_retried_cells_lists_each_failed_attempt_and_the_final_class(tmp_path):
    ok = with_attempts(tmp_path, "ok", ["server-busy", None], 1)
    failed = with_attempts(
        tmp_path, "failed", ["connection-refused", "server-busy", "server-busy"], 1
    )
    once = with_attempts(tmp_path, "ok", [None], 2)

    rows = retried_cells(read_cells([ok, failed, once])).to_dicts()

    assert sorted((r["status"], r["attempts"], r["error_class"]) for r in rows) == [
        ("failed", 3, "server-busy"),
        ("ok", 2, None),
    ]
    logs = {r["status"]: r["attempt_log"] for r in rows}
    assert logs["ok"] == "attempt 1: server-busy: iperf3 said: server-busy here"
    assert logs["failed"].count("attempt") == 3


def test_cells_without_attempts_have_no_retry_columns(cells):
    assert cells["attempts"].null_count() == cells.height
    assert retried_cells(cells).height == 0
