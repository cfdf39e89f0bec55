"""Tests of netpipe.report: figures, tables, escaping and self-containment."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
import vl_convert

from netpipe.aggregate import aggregate, find_cells
from netpipe.report import build_report

RAW = Path(__file__).parent / "data" / "cells" / "raw"
CONFIG = {
    "drivers": ["veth-bridge", "macvlan-bridge", "ipvlan-l3"],
    "protocols": {"tcp": {"pairs": [1, 2]}, "udp": {"pairs": [1, 2]}},
    "mtus": [1500, 9000],
    "repetitions": 3,
}
# Hosts that the inlined Vega bundle names in strings (XML namespaces, the
# editor link that is switched off, an issue reference); none is fetched.
KNOWN_HOSTS = {"www.w3.org", "vega.github.io", "github.com"}
EVIL_DRIVER = "<script>alert('driver')</script>"
EVIL_HOST = '<img src=x onerror="alert(1)">'


class Page(HTMLParser):
    """Collects what a test needs from the report: elements, scripts, cells."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.charts: list[str] = []
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[dict[str, str | None]] = []
        self.cells: list[str] = []
        self.specs_text = ""
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "np-chart" in (attributes.get("class") or "").split():
            self.charts.append(attributes["id"])
        if tag == "script":
            self.scripts.append(attributes)
            self._in = "specs" if attributes.get("id") == "np-specs" else None
        if tag in ("link", "img", "iframe"):
            self.links.append(attributes)
        if tag == "td":
            self._in = "td"
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag in ("script", "td"):
            self._in = None

    def handle_data(self, data):
        if self._in == "specs":
            self.specs_text += data
        elif self._in == "td":
            self.cells[-1] += data

    @property
    def specs(self) -> dict:
        return json.loads(self.specs_text) if self.specs_text else {}


def make_results(tmp_path: Path, paths) -> tuple[Path, Path, pl.DataFrame]:
    out = tmp_path / "results"
    summary = aggregate(paths, out / "cells.parquet", out / "summary.csv")
    return out / "cells.parquet", out / "summary.csv", summary


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The report of every fixture cell, its text and parsed page."""
    tmp = tmp_path_factory.mktemp("report")
    cells, summary_csv, summary = make_results(tmp, find_cells(RAW))
    out = build_report(cells, summary_csv, CONFIG, tmp / "results" / "report.html")
    text = out.read_text(encoding="utf-8")
    return {"path": out, "text": text, "page": Page(text), "summary": summary}


def test_report_has_one_figure_per_topology_and_protocol_measured(full):
    measured = full["summary"].filter(pl.col("reps_ok") > 0)
    panels = measured.select("topology", "protocol").unique().height
    assert panels == 2

    page = full["page"]
    assert len(page.charts) == panels
    assert sorted(page.specs) == sorted(page.charts)


def test_each_figure_plots_gbits_against_log2_pairs_per_driver_by_mtu(full):
    summary = full["summary"].filter(pl.col("reps_ok") > 0)
    for spec in full["page"].specs.values():
        layer = spec["spec"]["layer"][0]
        assert layer["encoding"]["x"]["scale"] == {"type": "log", "base": 2}
        assert layer["encoding"]["color"]["field"] == "driver"
        assert spec["facet"]["column"]["field"] == "mtu"

        (values,) = spec["datasets"].values()
        for point in values:
            expected = summary.filter(
                pl.col("driver") == point["driver"],
                pl.col("mtu") == point["mtu"],
                pl.col("pairs") == point["pairs"],
                pl.col("throughput_bps_mean") / 1e9 == point["gbps"],
            )
            assert expected.height == 1

        # The spec must be one Vega-Lite can draw: render it without a browser.
        svg = vl_convert.vegalite_to_svg(spec, vl_version="6.4")
        assert "veth-bridge" in svg


def test_tcp_figure_shows_both_mtus_side_by_side(full):
    tcp = next(s for s in full["page"].specs.values() if "TCP" in s["title"])
    (values,) = tcp["datasets"].values()
    assert {v["mtu"] for v in values} == {1500, 9000}


def test_report_is_self_contained(full):
    text, page = full["text"], full["page"]

    assert "https://cdn" not in text and "http://cdn" not in text
    assert "<script src" not in text.lower()
    assert all("src" not in script for script in page.scripts)
    assert page.links == []
    hosts = set(re.findall(r"https?://([^/\"'\s)]+)", text))
    assert hosts <= KNOWN_HOSTS
    # The Vega libraries themselves are inlined, not merely referenced.
    assert "vega-lite" in text and len(text) > 500_000


def test_report_lists_failed_skipped_and_incomplete_cells_with_reasons(full):
    cells = full["page"].cells
    docs = [json.loads(p.read_text()) for p in find_cells(RAW)]
    for doc in docs:
        if doc["status"] in ("failed", "skipped"):
            assert doc["reason"] in cells
    assert "incomplete" in cells
    assert "timeout" in cells and "iperf3-error" in cells


def test_report_shows_provenance_and_config(full):
    text, cells = full["text"], full["page"].cells
    assert "6.18.44-fc-v1147" in cells
    assert "3.12" in cells
    assert "AMD EPYC (2 CPUs)" in cells
    assert "vm" in cells
    assert "repetitions: 3" in text
    assert re.search(r"2026-12-03 15:4\d:\d\d to 2026-12-03 15:4\d:\d\d", text)


def test_markup_in_result_and_config_values_shows_as_text(tmp_path):
    doc = json.loads(
        (RAW / "local/netns/veth-bridge/tcp/mtu1500/pairs2/rep1.json").read_text()
    )
    doc["cell"]["driver"] = EVIL_DRIVER
    doc["provenance"]["hostname"] = EVIL_HOST
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps(doc))
    skipped = RAW / "local/netns/ipvlan-l3/tcp/mtu1500/pairs1/rep1.json"
    config = {**CONFIG, "note": "</pre><script>alert('config')</script>"}

    cells, summary_csv, _ = make_results(tmp_path, [evil, skipped])
    out = build_report(cells, summary_csv, config, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    page = Page(text)

    assert EVIL_DRIVER not in text and EVIL_HOST not in text
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#39;driver&#39;)&lt;/script&gt;" in text
    assert EVIL_DRIVER in page.cells
    assert any(EVIL_HOST in cell for cell in page.cells)
    assert "&lt;/pre&gt;&lt;script&gt;" in text
    # Inside the figure's JSON the name survives intact for Vega to draw as text.
    (values,) = next(iter(page.specs.values()))["datasets"].values()
    assert values[0]["driver"] == EVIL_DRIVER


def test_report_builds_with_only_skipped_cells(tmp_path):
    skipped = RAW / "local/netns/ipvlan-l3/tcp/mtu1500/pairs1/rep1.json"
    cells, summary_csv, _ = make_results(tmp_path, [skipped])
    out = build_report(cells, summary_csv, CONFIG, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    page = Page(text)

    assert page.charts == [] and page.specs == {}
    assert "No cell has a measured throughput" in text
    assert "skipped" in page.cells
    assert "n/a" in page.cells
    assert "0.000" not in page.cells


def test_report_builds_with_no_cell_files_at_all(tmp_path):
    cells, summary_csv, _ = make_results(tmp_path, [])
    out = build_report(cells, summary_csv, {}, tmp_path / "report.html")
    text = out.read_text(encoding="utf-8")
    assert "No cell result files were found" in text
    assert Page(text).charts == []


def test_report_replaces_the_old_file_and_leaves_no_temporary(tmp_path, full):
    out = tmp_path / "report.html"
    out.write_text("stale")
    cells = full["path"].parent / "cells.parquet"
    summary_csv = full["path"].parent / "summary.csv"
    build_report(cells, summary_csv, CONFIG, out)
    assert out.read_text(encoding="utf-8") == full["text"]
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_report_lists_retries_and_final_failures_with_their_class(tmp_path):
    source = next(
        p for p in find_cells(RAW) if json.loads(p.read_text())["status"] == "failed"
    )
    doc = json.loads(source.read_text())
    doc["error_class"] = "server-busy"
    doc["reason"] = "the iperf3 server was already running another test"
    doc["attempts"] = [
        {
            "attempt": n,
            "status": "failed",
            "error_class": "server-busy",
            "message": "iperf3 said: the server is busy running a test",
        }
        for n in (1, 2, 3)
    ]
    target = tmp_path / "raw" / source.relative_to(RAW)
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(doc))

    cells, summary_csv, _ = make_results(tmp_path, [target])
    out = build_report(cells, summary_csv, CONFIG, tmp_path / "report.html")
    page = Page(out.read_text(encoding="utf-8"))

    assert "Retried cells" in out.read_text(encoding="utf-8")
    assert "3" in page.cells and "server-busy" in page.cells
    assert any("attempt 3: server-busy: iperf3 said" in c for c in page.cells)
    assert doc["reason"] in page.cells  # the final failure, in its own table
