"""Alert report: open and recent alerts by severity; for the most severe device alerts, the
metric around the alert re-scored with the stored models, showing the detector's band, the
anomalous points, the alert's span and any labeled ground truth, plus the PCA contributions.

    write_alert_report(reports_dir, start=None, end=None, run_id=None) -> Path

The band is the rolling z-score detector's: trailing mean +- rolling_threshold x trailing std
(the std floored at the series' sensor-noise level, as the detector floors it). Points are
anomalous when the fused score (max of every detector and the static limit) reaches 1, so a
point may be anomalous inside the band (stuck, seasonal or limit fired) - hover says which.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from markupsafe import Markup, escape

from core import db, detection, features, report_store, scoring
from reports import catalog, figures, ranges
from reports.publish import publish
from reports.render import (
    MISSING,
    PageMeta,
    badge,
    fmt_duration,
    fmt_num,
    fmt_ts,
    page_meta,
    render,
    table,
)

log = logging.getLogger(__name__)
DEFAULT_HOURS = 24.0
MAX_PLOTS = 20  # device alerts plotted (most severe, open, newest first); the rest are listed
MAX_ROWS = 200  # alerts listed
MARGIN = timedelta(minutes=30)  # plotted before the alert opened and after it ended
MAX_SPAN = timedelta(hours=12)  # a longer alert is plotted from its start to start + this
MAX_POINTS = 2500  # per plotted line


@dataclass
class AlertPlot:
    """What one alert's figure shows (pure data, built by `alert_plot`)."""

    alert: dict[str, Any]
    series: pd.DataFrame  # ts, value, baseline_mean, lower, upper, score, fired_by
    labels: pd.DataFrame  # ground truth overlapping the window (this metric or device-wide)
    shares: dict[str, float] = field(default_factory=dict)  # PCA contribution per metric
    threshold: float = 0.0
    limit: float | None = None
    note: str = ""


@dataclass
class AlertReportData:
    alerts: pd.DataFrame  # report_store.alerts
    counts: pd.DataFrame  # report_store.alert_counts
    models: pd.DataFrame  # report_store.models
    plots: list[AlertPlot] = field(default_factory=list)
    plot_note: str = ""


# ---------------------------------------------------------------------------------------------
# Pure: scored window -> band, figures, page.

def with_until(alerts: pd.DataFrame, end: datetime) -> pd.DataFrame:
    """`until`: when each alert stopped - resolved_at, or for an open alert the report's end
    (the alert machine moves last_seen_at only on transitions, so it is no end for an open
    alert; an anomaly still going on must stay in its plot)."""
    if alerts.empty:
        return alerts.assign(until=pd.Series([], dtype="datetime64[ns, UTC]"))
    last = pd.to_datetime(alerts["last_seen_at"], utc=True)
    still = last.where(last > pd.Timestamp(end), pd.Timestamp(end))
    resolved = pd.to_datetime(alerts["resolved_at"], utc=True).fillna(last)
    return alerts.assign(until=still.where(alerts["is_open"].astype(bool), resolved))


def alert_end(alert: dict[str, Any]) -> pd.Timestamp:
    until = alert.get("until")
    if until is not None and not pd.isna(until):
        return pd.Timestamp(until)
    end = alert.get("resolved_at")
    return pd.Timestamp(alert["last_seen_at"] if end is None or pd.isna(end) else end)


def plot_window(alert: dict[str, Any]) -> tuple[pd.Timestamp, pd.Timestamp]:
    opened = pd.Timestamp(alert["opened_at"])
    until = min(alert_end(alert), opened + MAX_SPAN)
    return opened - MARGIN, until + MARGIN


def band(scored: pd.DataFrame, suite: detection.Suite, device_id: int, metric: str
         ) -> pd.DataFrame:
    """One series of score_suite output with the rolling detector's band (lower, upper)."""
    s = scored[(scored["device_id"] == device_id) & (scored["metric"] == metric)]
    s = s.sort_values("ts").reset_index(drop=True)
    k = suite.params.rolling_threshold
    key = f"{device_id}:{metric}"
    floor = 0.0
    rolling = suite.detectors.get("rolling_z")
    if key in suite.series and rolling is not None:
        floor = float(np.asarray(rolling.scale_floor_)[suite.series.index(key)])
    mean = s["baseline_mean"].to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        std = np.maximum(np.maximum(s["baseline_std"].to_numpy(np.float64), floor),
                         1e-9 * (1.0 + np.abs(mean)))
    keep = ["ts", "value", "baseline_mean", "score", "fired_by", *[
        c for c in s.columns if c.startswith("pca_share_")]]
    return s[keep].assign(lower=mean - k * std, upper=mean + k * std)


def pca_shares(series: pd.DataFrame, alert: dict[str, Any]) -> dict[str, float]:
    """PCA contribution per metric at the alert's peak (else its highest score): from the
    alert's stored contributions when they have them, else from the re-scored point."""
    stored = alert.get("contributions") or {}
    shares = {k.removeprefix("pca_share_"): float(v) for k, v in stored.items()
              if k.startswith("pca_share_") and v is not None}
    if shares or series.empty:
        return shares
    opened, end = pd.Timestamp(alert["opened_at"]), alert_end(alert)
    inside = series[(series["ts"] >= opened) & (series["ts"] <= end)]
    inside = inside if len(inside) else series
    peak = alert.get("peak_ts")
    at = inside[inside["ts"] == pd.Timestamp(peak)] if peak is not None and not pd.isna(
        peak) else inside.iloc[0:0]
    scores = inside["score"].fillna(-np.inf).to_numpy()
    row = at.iloc[0] if len(at) else inside.iloc[int(np.argmax(scores))]
    return {c.removeprefix("pca_share_"): float(row[c]) for c in series.columns
            if c.startswith("pca_share_") and pd.notna(row[c])}


def _naive(values: Any) -> pd.Series:
    """UTC timestamps without a zone (plotly draws them as they are: pages are all UTC)."""
    return pd.to_datetime(pd.Series(values), utc=True).dt.tz_localize(None)


def _stamps(values: Any) -> np.ndarray:
    """UTC timestamps as ISO strings (millisecond precision) for a date axis: a fixed-width
    string array, which plotly copies in one piece, where an array of timestamps is copied
    element by element (most of drawing a report's figures)."""
    return np.datetime_as_string(_naive(values).to_numpy("datetime64[ms]"), unit="ms")


def _y_range(s: pd.DataFrame, limit: float | None) -> list[float] | None:
    """Fit the values; let the band widen the view by at most one value span each side, so a
    very wide band does not flatten the series into a line."""
    values = s["value"].dropna()
    if values.empty:
        return None
    lo, hi = float(values.min()), float(values.max())
    span = max(hi - lo, 1e-6 * max(abs(hi), 1.0), 1e-9)
    lower, upper = s["lower"].dropna(), s["upper"].dropna()
    if len(lower):
        lo = min(lo, max(float(lower.quantile(0.02)), lo - span))
    if len(upper):
        hi = max(hi, min(float(upper.quantile(0.98)), hi + span))
    if limit is not None and lo - span <= limit <= hi + span:
        lo, hi = min(lo, limit), max(hi, limit)
    pad = 0.08 * (hi - lo or span)
    return [lo - pad, hi + pad]


def _label_rows(labels: pd.DataFrame) -> list[tuple[Any, Any, Any]]:
    """(start_ts, end_ts, anomaly_type) per label; not itertuples, whose namedtuple class
    costs ~1 ms to make each call."""
    if labels.empty:
        return []
    return list(zip(labels["start_ts"], labels["end_ts"], labels["anomaly_type"], strict=True))


def _iso(at: pd.Timestamp) -> str:
    """One UTC time as a date axis takes it (as _stamps writes a column)."""
    return str(_stamps([at])[0])


def _span(x0: pd.Timestamp, x1: pd.Timestamp, **style: Any) -> dict[str, Any]:
    """A full-height band over [x0, x1] (what add_vrect draws)."""
    return {"type": "rect", "xref": "x", "yref": "paper", "x0": _iso(x0), "x1": _iso(x1),
            "y0": 0, "y1": 1, **style}


def _note(text: str, color: str, *, x: Any, y: float, yanchor: str, xref: str = "x",
          xanchor: str = "left", yref: str = "paper") -> dict[str, Any]:
    return {"text": text, "x": x, "xref": xref, "xanchor": xanchor, "y": y, "yref": yref,
            "yanchor": yanchor, "showarrow": False, "font": {"color": color, "size": 11}}


def alert_figure(plot: AlertPlot) -> dict[str, Any]:
    """The alert's window: value, trailing band, anomalous points, labels, limit (a spec)."""
    alert, s = plot.alert, plot.series
    metric = str(alert["metric"])
    anomalous = (s["score"] >= 1.0).to_numpy()
    t = figures.thin(s, MAX_POINTS, keep=anomalous)
    x = _stamps(t["ts"])
    a = s[anomalous]
    data = [
        {"type": "scatter", "x": x, "y": t["upper"].to_numpy(), "mode": "lines",
         "line": {"width": 0}, "hoverinfo": "skip", "showlegend": False},
        {"type": "scatter", "x": x, "y": t["lower"].to_numpy(), "mode": "lines",
         "line": {"width": 0}, "fill": "tonexty", "fillcolor": "rgba(37, 99, 235, 0.13)",
         "hoverinfo": "skip",
         "name": f"band: trailing mean ± {plot.threshold:g}\N{GREEK SMALL LETTER SIGMA}"},
        {"type": "scatter", "x": x, "y": t["baseline_mean"].to_numpy(), "mode": "lines",
         "name": "trailing mean", "line": {"color": "#60a5fa", "width": 1, "dash": "dot"},
         "hovertemplate": "mean %{y:.4g}<extra></extra>"},
        {"type": "scatter", "x": x, "y": t["value"].to_numpy(), "mode": "lines",
         "name": metric, "line": {"color": "#1f2937", "width": 1.3},
         "hovertemplate": "%{x|%H:%M:%S} %{y:.4g}<extra></extra>"},
        {"type": "scatter", "x": _stamps(a["ts"]), "y": a["value"].to_numpy(),
         "mode": "markers", "name": "anomalous (fused score ≥ 1)",
         "marker": {"color": "#dc2626", "size": 7, "line": {"color": "white", "width": 1}},
         "customdata": [list(pair) for pair in zip(a["score"].round(2).tolist(),
                                                    a["fired_by"].fillna("").tolist(),
                                                    strict=True)],
         "hovertemplate": "%{x|%H:%M:%S} %{y:.4g}<br>score %{customdata[0]}"
                          " (%{customdata[1]})<extra></extra>"},
    ]
    shapes: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    if plot.limit is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y",
                       "y0": plot.limit, "y1": plot.limit,
                       "line": {"color": "#b91c1c", "width": 1, "dash": "dash"}})
        notes.append(_note(f"limit {plot.limit:g}", "#b91c1c", x=1, xref="paper",
                           xanchor="right", y=plot.limit, yref="y", yanchor="bottom"))
    lo, hi = s["ts"].min(), s["ts"].max()
    for start, stop, kind in _label_rows(plot.labels):
        x0, x1 = max(pd.Timestamp(start), lo), min(pd.Timestamp(stop), hi)
        if x0 >= x1:
            x1 = x0 + pd.Timedelta(seconds=10)  # keep an instant visible
        shapes.append(_span(x0, x1, fillcolor="#16a34a", opacity=0.16, line={"width": 0},
                            layer="below"))
        notes.append(_note(f"labeled {kind}", "#166534", x=_iso(x0), y=1, yanchor="top"))
    opened, end = pd.Timestamp(alert["opened_at"]), min(alert_end(alert), hi)
    shapes.append(_span(opened, max(end, opened), fillcolor="rgba(220, 38, 38, 0.05)",
                        line={"color": "#dc2626", "width": 1, "dash": "dash"}))
    notes.append(_note(f"alert #{alert['alert_id']}", "#b91c1c", x=_iso(opened), y=0,
                       yanchor="bottom"))
    layout = {"shapes": shapes, "annotations": notes, "hovermode": "closest",
              "margin": {"t": 30},
              "xaxis": {"hoverformat": "%Y-%m-%d %H:%M:%S", "tickformat": "%H:%M\n%b %d"},
              "yaxis": {"title": {"text": metric}, "range": _y_range(s, plot.limit)}}
    return figures.spec(data, layout, 340)


def pca_figure(shares: dict[str, float], metric: str) -> dict[str, Any]:
    """Each metric's share of the PCA anomaly, the alert's metric in red (a spec)."""
    names = list(features.PCA_METRICS)
    values = [shares.get(m, np.nan) for m in names]
    bar = {"type": "bar", "x": [None if np.isnan(v) else v for v in values], "y": names,
           "orientation": "h",
           "marker": {"color": ["#dc2626" if m == metric else "#94a3b8" for m in names]},
           "text": [(MISSING if np.isnan(v) else f"{v:.0%}") for v in values],
           "textposition": "outside", "cliponaxis": False,
           "hovertemplate": "%{y}: %{x:.1%}<extra></extra>"}
    layout = {"showlegend": False, "margin": {"t": 30, "l": 90},
              "xaxis": {"range": [0, 1.15], "tickformat": ".0%",
                        "title": {"text": "share of the PCA anomaly"}},
              "yaxis": {"autorange": "reversed"}}
    return figures.spec([bar], layout, 340)


def _breakable(name: Any) -> Markup:
    """A long key such as quality:raw_batch:value_within_hard_limits may wrap after a colon."""
    return Markup(":<wbr>").join(escape(part) for part in str(name).split(":"))


def _alerts_table(frame: pd.DataFrame) -> Markup:
    if frame.empty:
        return table(frame)
    rows = pd.DataFrame({
        "#": frame["alert_id"],
        "severity": frame["severity"],
        "state": frame["state"],
        "kind": frame["kind"],
        "device": frame["device_name"].where(frame["device_id"].notna(), "fleet (no device)"),
        "metric": frame["metric"],
        "opened": frame["opened_at"],
        "resolved": frame["resolved_at"],
        "peak score": frame["peak_score"],
        "reason": frame["reason"],
    })
    return table(rows, numeric=("#", "peak score"), formats={
        "severity": badge, "opened": fmt_ts, "resolved": fmt_ts,
        "state": lambda v: badge(v, "state-open" if v in ("pending", "firing")
                                 else "state-resolved"),
        "peak score": lambda v: fmt_num(v, 2), "device": lambda v: MISSING if v is None else v,
        "metric": _breakable},
        nowrap=("device",))


def _cards(counts: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for sev in figures.SEVERITIES:
        rows = counts[counts["severity"] == sev]
        out.append({"severity": sev, "open": int(rows.loc[rows["is_open"], "n"].sum()),
                    "total": int(rows["n"].sum())})
    return out


def summary_line(data: AlertReportData) -> str:
    c = data.counts
    open_ = int(c.loc[c["is_open"], "n"].sum()) if len(c) else 0
    worst = next((s for s in figures.SEVERITIES
                  if len(c) and c.loc[c["is_open"] & (c["severity"] == s), "n"].sum()), None)
    total = int(c["n"].sum()) if len(c) else 0
    worst_text = f", worst {worst}" if worst else ""
    return f"{open_} open{worst_text}; {total} open or active in range; " \
           f"{len(data.plots)} plotted"


def build_alert_html(meta: PageMeta, data: AlertReportData) -> str:
    """The alert page (pure: data in, HTML out)."""
    alerts = data.alerts
    plottable = alerts["device_id"].notna() & (alerts["kind"] == "device") if len(alerts) \
        else pd.Series([], dtype=bool)
    details = []
    for plot in data.plots:
        a = plot.alert
        details.append({
            "alert": a, "note": plot.note,
            "duration": fmt_duration((alert_end(a) - pd.Timestamp(a["opened_at"]))
                                     .total_seconds()),
            "labels": ", ".join(f"{kind} ({fmt_ts(start)} to {fmt_ts(stop)})"
                                for start, stop, kind in _label_rows(plot.labels)),
            "figure": figures.to_html(alert_figure(plot)) if len(plot.series) else None,
            "pca": figures.to_html(pca_figure(plot.shares, str(a["metric"])))
            if plot.shares else None,
        })
    total = int(data.counts["n"].sum()) if len(data.counts) else 0
    has_figures = any(d["figure"] or d["pca"] for d in details)
    return render(
        "alerts.html", meta, figures=has_figures, cards=_cards(data.counts), total=total,
        listed=len(alerts), all_alerts=_alerts_table(alerts.head(MAX_ROWS)),
        other_alerts=_alerts_table(alerts[~plottable].head(MAX_ROWS)) if len(alerts) else None,
        n_device=int(plottable.sum()), n_other=int((~plottable).sum()),
        details=details, plot_note=data.plot_note, max_plots=MAX_PLOTS,
        models=data.models, max_rows=MAX_ROWS, summary=summary_line(data))


# ---------------------------------------------------------------------------------------------
# I/O: read alerts, re-score each plotted alert's window with the stored models.

def alert_plot(conn: psycopg.Connection, suite: detection.Suite, devices: pd.DataFrame,
               alert: dict[str, Any]) -> AlertPlot:
    device_id, metric = int(alert["device_id"]), str(alert["metric"])
    w0, w1 = plot_window(alert)
    interval = int(devices["interval_seconds"].max()) if len(devices) else 10
    # The rolling baseline needs rolling_window readings before the window (as scoring reads).
    history = pd.Timedelta(seconds=interval * (suite.params.rolling_window + 5))
    readings = report_store.device_readings(conn, device_id, (w0 - history).to_pydatetime(),
                                            w1.to_pydatetime())
    labels = report_store.device_labels(conn, device_id, w0.to_pydatetime(), w1.to_pydatetime())
    if len(labels):
        labels = labels[labels["metrics"].map(lambda ms: metric in list(ms))]
    plot = AlertPlot(alert, pd.DataFrame(), labels.reset_index(drop=True),
                     threshold=suite.params.rolling_threshold,
                     limit=suite.params.limits.get(metric))
    if metric not in features.PCA_METRICS:
        plot.note = f"metric {metric!r} is not a scored series: nothing to plot"
        return plot
    scored = detection.score_suite(suite, readings, devices, w0.to_pydatetime(),
                                   w1.to_pydatetime())
    if scored.empty:
        plot.note = "no readings stored around this alert (retention?)"
        return plot
    plot.series = band(scored, suite, device_id, metric)
    if plot.series.empty:
        plot.note = "no readings of this metric around the alert"
    plot.shares = pca_shares(plot.series, alert)
    if not plot.shares:
        stored = report_store.stored_contributions(conn, device_id, metric,
                                                   pd.Timestamp(alert["opened_at"]),
                                                   alert_end(alert))
        plot.shares = {k.removeprefix("pca_share_"): float(v) for k, v in (stored or {}).items()
                       if k.startswith("pca_share_") and v is not None}
    return plot


def collect(conn: psycopg.Connection, start: datetime, end: datetime,
            max_plots: int = MAX_PLOTS) -> AlertReportData:
    alerts = with_until(report_store.alerts(conn, start, end,
                                            limit=max(MAX_ROWS, max_plots) * 5), end)
    data = AlertReportData(alerts, report_store.alert_counts(conn, start, end),
                           report_store.models(conn))
    device_alerts = [a for a in alerts.to_dict("records")
                     if a["kind"] == "device" and a["device_id"] is not None
                     and not pd.isna(a["device_id"])]
    if not device_alerts:
        return data
    try:
        suite = scoring.load_suite(conn)
    except scoring.NoModelsError:
        data.plot_note = "No trained models, so device alerts cannot be re-scored for plots: " \
                         "run `telemetry run train`."
        return data
    devices = report_store.devices(conn)
    for alert in device_alerts[:max_plots]:
        data.plots.append(alert_plot(conn, suite, devices, alert))
    return data


def report_is_behind(reports_dir: Path) -> bool:
    """Alerts changed after alerts.html was last written, or it never was: the micro-batch
    then rewrites it even in a minute without alert changes, so a minute whose report could
    not be written (disk full) is caught up by the next one."""
    with db.connect() as conn:
        changed = report_store.latest_alert_change(conn)
    if changed is None:
        return False
    try:
        written = [e.generated_at for e in catalog.entries(reports_dir) if e.name == "alerts"]
    except OSError:  # the directory itself is broken: the write will say how
        return True
    # generated_at has whole seconds; the report reads alerts after their change commits.
    return not written or datetime.fromisoformat(max(written)) + timedelta(seconds=1) < changed


def write_alert_report(reports_dir: Path, start: datetime | None = None,
                       end: datetime | None = None, run_id: str | None = None, *,
                       hours: float = DEFAULT_HOURS, max_plots: int = MAX_PLOTS) -> Path:
    """Build alerts.html for [start, end) (default: the `hours` before the newest data) and
    record it; returns its path."""
    with db.connect() as conn:
        start, end = ranges.resolve(conn, start, end, hours)
        data = collect(conn, start, end, max_plots)
    meta = page_meta(reports_dir, "alerts", "Alert report", run_id or catalog.cli_run_id(),
                     start, end)
    return publish(reports_dir, meta, build_alert_html(meta, data), summary_line(data))
