"""Drift summary: our page over telemetry.drift_results (per metric and site: method,
statistic, threshold, drifted), linking to the Evidently HTML report the drift flow writes
(drift_results.report_path; catalog name "drift-evidently").

    write_drift_summary_report(reports_dir, run_id=None) -> Path
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup

from core import db, report_store
from reports import catalog, figures
from reports.publish import publish
from reports.render import (
    MISSING,
    PageMeta,
    badge,
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_ts,
    page_meta,
    render,
    table,
)

EVIDENTLY = "drift-evidently"
DRIFT_SCALE = [[0.0, "#bbf7d0"], [0.5, "#bbf7d0"], [0.5, "#fca5a5"], [1.0, "#fca5a5"]]


@dataclass(frozen=True)
class Link:
    label: str
    href: str  # relative to the reports directory
    exists: bool
    generated_at: str | None = None


@dataclass
class DriftData:
    latest: pd.DataFrame  # report_store.latest_drift
    history: pd.DataFrame  # report_store.drift_history
    links: list[Link] = field(default_factory=list)


def _stat(value: Any) -> str:
    return MISSING if value is None or pd.isna(value) else f"{float(value):.3g}"


def drift_figure(latest: pd.DataFrame) -> go.Figure:
    """Site x metric: red where drifted, the statistic in each cell."""
    z = latest.pivot(index="site", columns="metric", values="drifted").astype(float)
    sites = ["all", *sorted(s for s in z.index if s != "all")]
    z = z.reindex([s for s in sites if s in z.index])
    stat = latest.pivot(index="site", columns="metric", values="statistic").reindex(z.index)
    text = stat.map(_stat)
    hover = latest.assign(h=[
        f"{r.method}: {_stat(r.statistic)} vs threshold {_stat(r.threshold)}<br>"
        f"{'drifted' if r.drifted else 'no drift'}; mean {_stat(r.reference_mean)} → "
        f"{_stat(r.current_mean)}" for r in latest.itertuples()]
    ).pivot(index="site", columns="metric", values="h").reindex(z.index)
    fig = figures.heatmap(z, "Drift per site and metric (cell: the test statistic)",
                          DRIFT_SCALE, 0, 1, text=text, customdata=hover,
                          hover="%{y} · %{x}<br>%{customdata}", row_height=32)
    fig.update_traces(textfont={"size": 13})
    fig.update_traces(showscale=False)
    fig.update_xaxes(side="top")
    return fig


def history_figure(history: pd.DataFrame) -> go.Figure | None:
    """The fleet-wide ("all") statistic per metric over tested periods, when there are two or
    more; dashed: each metric's threshold."""
    fleet = history[history["site"] == "all"]
    if fleet["current_end"].nunique() < 2:
        return None
    fig = go.Figure()
    for i, (metric, part) in enumerate(fleet.groupby("metric", sort=True)):
        color = figures.SERIES[i % len(figures.SERIES)]
        x = pd.to_datetime(part["current_end"], utc=True).dt.tz_localize(None)
        fig.add_scatter(x=x, y=part["statistic"], mode="lines+markers", name=metric,
                        line={"color": color},
                        marker={"symbol": ["x" if d else "circle" for d in part["drifted"]],
                                "size": [10 if d else 6 for d in part["drifted"]]})
        fig.add_scatter(x=x, y=part["threshold"], mode="lines", showlegend=False,
                        line={"color": color, "dash": "dash", "width": 1}, hoverinfo="skip")
    fig.update_yaxes(title_text="statistic")
    return figures.styled(fig, 320, "Fleet-wide statistic per tested period (x: drifted)")


def drift_table(latest: pd.DataFrame) -> Markup:
    rows = latest.assign(change=(latest["current_mean"] - latest["reference_mean"])
                         / latest["reference_mean"].abs())[
        ["site", "metric", "method", "statistic", "threshold", "drifted", "reference_rows",
         "current_rows", "reference_mean", "current_mean", "change"]]
    return table(rows, headers={"reference_rows": "reference rows",
                                "current_rows": "current rows",
                                "reference_mean": "reference mean",
                                "current_mean": "current mean", "change": "mean change"},
                 numeric=("statistic", "threshold", "reference_rows", "current_rows",
                          "reference_mean", "current_mean", "change"),
                 formats={"statistic": _stat, "threshold": _stat,
                          "drifted": lambda v: badge("drifted" if v else "no", "yes" if v
                                                     else "no"),
                          "reference_rows": fmt_int, "current_rows": fmt_int,
                          "reference_mean": fmt_num, "current_mean": fmt_num,
                          "change": fmt_pct})


def summary_line(data: DriftData) -> str:
    latest = data.latest
    if latest.empty:
        return "no drift results yet"
    fleet = latest[latest["site"] == "all"]
    scope = fleet if len(fleet) else latest
    drifted = sorted(set(scope.loc[scope["drifted"], "metric"]))
    return (f"{len(drifted)} of {scope['metric'].nunique()} metrics drifted"
            + (f" ({', '.join(drifted)})" if drifted else "")
            + f"; {int(latest['drifted'].sum())} of {len(latest)} site/metric tests")


def build_drift_html(meta: PageMeta, data: DriftData) -> str:
    """The drift summary page (pure: data in, HTML out)."""
    latest = data.latest
    if latest.empty:
        return render("drift_summary.html", meta, figures=False, has_data=False,
                      links=data.links)
    first = latest.iloc[0]
    history = history_figure(data.history)
    return render(
        "drift_summary.html", meta, figures=True, has_data=True, links=data.links,
        summary=summary_line(data), run=first["run_id"],
        reference=(first["reference_start"], first["reference_end"]),
        current=(first["current_start"], first["current_end"]),
        methods=", ".join(sorted(set(latest["method"]))),
        heatmap=figures.to_html(drift_figure(latest)),
        history=figures.to_html(history) if history is not None else None,
        table=drift_table(latest), created=fmt_ts(latest["created_at"].max()))


def _link(reports_dir: Path, path: str, label: str, generated: str | None = None) -> Link:
    """A link relative to the reports directory; a relative report_path is read as relative to
    it, else (as a writer may have stored it) to the working directory."""
    full = Path(path) if Path(path).is_absolute() else reports_dir / path
    if not full.is_file() and Path(path).is_file():
        full = Path(path).resolve()
    href = Path(os.path.relpath(full, reports_dir)).as_posix()
    return Link(label, href, full.is_file(), generated)


def evidently_links(reports_dir: Path, latest: pd.DataFrame) -> list[Link]:
    """The latest period's Evidently files, then any others the catalog knows (newest first)."""
    links: list[Link] = []
    if len(latest):
        for path, rows in latest.dropna(subset=["report_path"]).groupby("report_path"):
            sites = ", ".join(sorted(set(rows["site"])))
            links.append(_link(reports_dir, str(path), f"Evidently report of this period"
                                                        f" (site {sites})"))
    seen = {link.href for link in links}
    for entry in catalog.entries(reports_dir):
        if entry.name == EVIDENTLY and entry.path not in seen:
            links.append(_link(reports_dir, entry.path, entry.title, entry.generated_at))
            seen.add(entry.path)
    return links[:10]


def write_drift_summary_report(reports_dir: Path, run_id: str | None = None) -> Path:
    """Build drift-summary.html from the newest tested period and record it."""
    with db.connect() as conn:
        latest = report_store.latest_drift(conn)
        history = report_store.drift_history(conn)
    data = DriftData(latest, history, evidently_links(reports_dir, latest))
    start = end = None
    if len(latest):
        start, end = latest["current_start"].iloc[0], latest["current_end"].iloc[0]
    meta = page_meta(reports_dir, "drift", "Drift summary", run_id or catalog.cli_run_id(),
                     start, end)
    return publish(reports_dir, meta, build_drift_html(meta, data), summary_line(data))
