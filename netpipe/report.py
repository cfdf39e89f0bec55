"""The HTML report: the study's figures, the summary, what is missing, provenance.

This module owns the report step of the flow. It reads ``results/cells.parquet``
and ``results/summary.csv``, draws one altair figure per topology and protocol
(total throughput against pair count, one line per driver, MTUs side by side)
and writes ``results/report.html``. The Vega, Vega-Lite and vega-embed
JavaScript comes from vl-convert's bundled copies and is inlined, so the file
opens offline and refers to no CDN; every value from a result file or the
config is HTML-escaped by jinja2's autoescaping.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import altair as alt
import jinja2
import polars as pl
import vl_convert
import yaml
from markupsafe import Markup

from netpipe import __version__
from netpipe.aggregate import SUMMARY_SCHEMA, retried_cells, unmeasured_cells
from netpipe.atomic import write_atomic
from netpipe.redact import redact

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"

# Runs inside the vl-convert bundle, where vegaEmbed is in scope. The specs sit
# in a JSON script element so that no value from the data is ever parsed as
# markup; actions are off because vega-embed's menu links to the online editor.
_EMBED_SNIPPET = """
const specs = JSON.parse(document.getElementById("np-specs").textContent);
for (const [id, spec] of Object.entries(specs)) {
  vegaEmbed("#" + id, spec, { actions: false, mode: "vega-lite", renderer: "svg" })
    .catch((error) => {
      document.getElementById(id).textContent = "The figure failed to draw: " + error;
    });
}
"""

_NOT_AVAILABLE = "n/a"


def build_report(
    cells_parquet: str | Path,
    summary_csv: str | Path,
    config: Mapping[str, Any],
    out_html: str | Path,
) -> Path:
    """Write the self-contained HTML report of a sweep; return its path."""
    cells = pl.read_parquet(cells_parquet)
    summary = pl.read_csv(summary_csv, schema=SUMMARY_SCHEMA)

    html = render_html(cells, summary, config)
    write_atomic(out_html, lambda tmp: tmp.write_text(html, encoding="utf-8"))

    log.info("wrote report %s (%d kB)", out_html, len(html.encode()) // 1024)
    return Path(out_html)


def render_html(
    cells: pl.DataFrame, summary: pl.DataFrame, config: Mapping[str, Any]
) -> str:
    """Render the report page from the pair frame, the summary and the config."""
    # One colour per driver across all figures, for drivers measured anywhere.
    measured_drivers = summary.filter(pl.col("throughput_bps_mean").is_not_null())
    drivers = sorted(measured_drivers["driver"].unique().to_list())

    figures: list[dict[str, Any]] = []
    for topology, protocol in _panels(summary):
        measured = summary.filter(
            pl.col("topology") == topology,
            pl.col("protocol") == protocol,
            pl.col("throughput_bps_mean").is_not_null(),
        )
        spec = None
        if measured.height:
            chart = throughput_figure(
                measured, drivers=drivers, title=_figure_title(topology, protocol)
            )
            spec = chart.to_dict()
            # The schema URL is only a label for editors; vega-embed is told the
            # mode, so the page carries no link it does not need.
            spec.pop("$schema", None)
        figures.append(
            {
                "id": f"np-figure-{len(figures)}",
                "title": _figure_title(topology, protocol),
                "spec": spec,
            }
        )

    specs = {f["id"]: f["spec"] for f in figures if f["spec"] is not None}
    # The bundle is vl-convert's own JavaScript, not data, so it goes in raw;
    # a page without figures needs none of it.
    bundle = Markup(_javascript_bundle()) if specs else ""  # noqa: S704

    template = _environment().get_template(TEMPLATE)
    return template.render(
        netpipe_version=__version__,
        has_cells=cells.height > 0,
        has_measured=bool(summary.filter(pl.col("reps_ok") > 0).height),
        figures=figures,
        specs=specs,
        summary_rows=[_summary_row(row) for row in summary.iter_rows(named=True)],
        backend_rows=backend_costs(summary),
        unmeasured_rows=list(unmeasured_cells(cells).drop("path").iter_rows()),
        retried_rows=list(retried_cells(cells).iter_rows()),
        provenance=_provenance(cells),
        config_yaml=_config_yaml(config),
        bundle=bundle,
    )


def throughput_figure(
    summary: pl.DataFrame, *, drivers: list[str] | None = None, title: str = ""
) -> alt.FacetChart:
    """The study's figure: total Gbit/s against pairs, a line per driver, per MTU."""
    data = summary.with_columns(
        (pl.col("throughput_bps_mean") / 1e9).alias("gbps"),
        (pl.col("throughput_bps_se") / 1e9).alias("se_gbps"),
        ((pl.col("throughput_bps_mean") - pl.col("throughput_bps_se")) / 1e9).alias(
            "low_gbps"
        ),
        ((pl.col("throughput_bps_mean") + pl.col("throughput_bps_se")) / 1e9).alias(
            "high_gbps"
        ),
    ).select(
        "driver",
        "backend",
        "mtu",
        "pairs",
        "gbps",
        "se_gbps",
        "low_gbps",
        "high_gbps",
        "reps_ok",
        "reps_total",
    )
    pair_counts = sorted(data["pairs"].unique().to_list())
    y_title = "total throughput (Gbit/s)"

    x = alt.X(
        "pairs:Q",
        title="container pairs",
        scale=alt.Scale(type="log", base=2),
        axis=alt.Axis(values=pair_counts, format="d"),
    )
    color = alt.Color(
        "driver:N",
        title="driver",
        scale=alt.Scale(domain=drivers) if drivers else alt.Undefined,
    )
    # Solid lines are bare namespaces, dashed ones Docker containers: the gap
    # between a driver's two lines is what the container runtime costs.
    dash = alt.StrokeDash(
        "backend:N",
        title="backend",
        scale=alt.Scale(domain=["netns", "docker"], range=[[1, 0], [6, 3]]),
        legend=alt.Legend(symbolType="stroke", symbolStrokeColor="gray"),
    )
    base = alt.Chart().encode(x=x, color=color, strokeDash=dash)
    lines = base.mark_line(point=True).encode(
        y=alt.Y("gbps:Q", title=y_title),
        tooltip=[
            alt.Tooltip("driver:N"),
            alt.Tooltip("backend:N"),
            alt.Tooltip("mtu:O", title="MTU"),
            alt.Tooltip("pairs:Q"),
            alt.Tooltip("gbps:Q", title="mean Gbit/s", format=".3f"),
            alt.Tooltip("se_gbps:Q", title="standard error", format=".3f"),
            alt.Tooltip("reps_ok:Q", title="reps measured"),
            alt.Tooltip("reps_total:Q", title="reps in total"),
        ],
    )
    # A point measured once has no standard error; it gets no bar.
    bars = (
        base.mark_errorbar(ticks=True)
        .encode(y=alt.Y("low_gbps:Q", title=y_title), y2="high_gbps:Q")
        .transform_filter("isValid(datum.low_gbps)")
    )
    return (
        alt.layer(lines, bars, data=data)
        .properties(width=320, height=240)
        .facet(column=alt.Column("mtu:O", title="MTU"))
        .properties(title=title or alt.Undefined)
    )


def _panels(summary: pl.DataFrame) -> list[tuple[str, str]]:
    """The topology and protocol combinations present, in a stable order."""
    pairs = summary.select("topology", "protocol").unique()
    return sorted(pairs.iter_rows())


def _figure_title(topology: str, protocol: str) -> str:
    """Heading of one figure, in the study's words."""
    return f"{topology} topology, {protocol.upper()}: total throughput"


def _summary_row(row: dict[str, Any]) -> list[str]:
    """One summary row as display strings, with n/a for unknown values."""
    return [
        row["topology"],
        row["backend"],
        row["driver"],
        row["protocol"],
        str(row["mtu"]),
        str(row["pairs"]),
        f"{row['reps_ok']} / {row['reps_total']}",
        str(row["reps_failed"]),
        str(row["reps_skipped"]),
        str(row["reps_incomplete"]),
        _number(row["throughput_bps_mean"], 1e-9, 3),
        _number(row["throughput_bps_se"], 1e-9, 3),
        _interval(row["throughput_bps_ci95_low"], row["throughput_bps_ci95_high"]),
        _number(row["cpu_host_pct_mean"], 1, 1),
        _number(row["retransmits_mean"], 1, 1),
        _number(row["lost_percent_mean"], 1, 2),
        _number(row["jitter_ms_mean"], 1, 3),
        _number(row["start_spread_s_mean"], 1e3, 1),
    ]


def backend_costs(summary: pl.DataFrame) -> list[list[str]]:
    """Docker against netns for the same cells: both means and their ratio."""
    key = ["topology", "driver", "protocol", "mtu", "pairs"]
    mean = "throughput_bps_mean"
    measured = summary.filter(pl.col(mean).is_not_null())
    netns = measured.filter(pl.col("backend") == "netns").select(*key, mean)
    docker = measured.filter(pl.col("backend") == "docker").select(*key, mean)
    both = netns.join(docker, on=key, suffix="_docker").sort(key)
    return [
        [
            *(str(row[k]) for k in key),
            _number(row[mean], 1e-9, 3),
            _number(row[f"{mean}_docker"], 1e-9, 3),
            f"{row[f'{mean}_docker'] / row[mean]:.3f}" if row[mean] else _NOT_AVAILABLE,
        ]
        for row in both.iter_rows(named=True)
    ]


def _number(value: float | None, scale: float, digits: int) -> str:
    """Format a scaled number, or n/a when it is unknown."""
    if value is None:
        return _NOT_AVAILABLE
    return f"{value * scale:.{digits}f}"


def _interval(low: float | None, high: float | None) -> str:
    """Format a confidence interval in Gbit/s, or n/a when it is unknown."""
    if low is None or high is None:
        return _NOT_AVAILABLE
    return f"{low * 1e-9:.3f} to {high * 1e-9:.3f}"


def _provenance(cells: pl.DataFrame) -> list[tuple[str, list[str]]]:
    """Distinct kernels, tools, CPUs, hosts and versions of the run, and its span."""
    per_cell = cells.unique("path")
    counts = dict(per_cell.group_by("status").len().iter_rows())

    def distinct(frame: pl.DataFrame, column: str) -> list[str]:
        return sorted(str(v) for v in frame[column].drop_nulls().unique())

    cpus = per_cell.select(
        pl.format("{} ({} CPUs)", "cpu_model", "cpu_count").alias("cpu")
    )
    return [
        (
            "cell files",
            [
                f"{per_cell.height} in total: "
                + ", ".join(
                    f"{counts.get(s, 0)} {s}" for s in ("ok", "failed", "skipped")
                )
            ],
        ),
        ("time span (UTC)", _span(per_cell)),
        ("kernels", distinct(per_cell, "kernel")),
        ("iperf3 versions (recorded)", distinct(per_cell, "iperf3_version")),
        ("iperf3 versions (in its output)", distinct(cells, "iperf_version")),
        ("CPUs", distinct(cpus, "cpu")),
        ("hosts", distinct(per_cell, "hostname")),
        ("netpipe versions", distinct(per_cell, "netpipe_version")),
        ("Python versions", distinct(per_cell, "python")),
        ("measurement settings", distinct(per_cell, "settings")),
    ]


def _span(per_cell: pl.DataFrame) -> list[str]:
    """First start and last end of the cells, as one line."""
    first = per_cell["started_at"].min()
    last = per_cell["ended_at"].max()
    if not isinstance(first, datetime) or not isinstance(last, datetime):
        return []
    return [f"{first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S}"]


def _config_yaml(config: Mapping[str, Any]) -> str:
    """The config as YAML; values YAML cannot represent are shown as strings."""
    plain = json.loads(json.dumps(redact(dict(config)), default=str))
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=False)


@functools.cache
def _environment() -> jinja2.Environment:
    """The jinja2 environment over the package templates, autoescaping HTML."""
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _template_source(name: str) -> str:
    """Read a template shipped as package data."""
    return (resources.files("netpipe") / "templates" / name).read_text("utf-8")


@functools.cache
def _javascript_bundle() -> str:
    """vega-embed, Vega-Lite and Vega with the embedding snippet, as one script."""
    major, minor = alt.VEGALITE_VERSION.split(".")[:2]
    bundle = vl_convert.javascript_bundle(_EMBED_SNIPPET, vl_version=f"{major}.{minor}")
    # An HTML parser ends a script element at the first "</script", wherever it
    # stands in the JavaScript; the escaped form means the same inside strings.
    return bundle.replace("</script", "<\\/script")
