"""Fleet overview: KPI health and alert counts per site/zone and hour, the worst devices, and
completeness per device and metric, from the dbt marts (analytics.fct_kpi_5m, dim_devices).

    write_fleet_report(reports_dir, start=None, end=None, run_id=None) -> Path

Health of a zone in an hour = healthy 5-minute device-metric windows / expected ones, where a
window is healthy when its completeness is >= 0.9 and no reading breached the metric's alert
threshold, and every metric of every installed device is expected in every window (so a silent
device lowers its zone's health instead of disappearing from it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup

from core import db, report_store
from reports import catalog, figures, ranges
from reports.publish import publish
from reports.render import PageMeta, fmt_int, fmt_pct, page_meta, render, table

DEFAULT_HOURS = 24.0
WORST_DEVICES = 15
COMPLETENESS_ROWS = 25  # least complete devices in the completeness heatmap
ALERT_SCALE = [[0.0, "#f8fafc"], [0.001, "#fee2e2"], [1.0, "#991b1b"]]


@dataclass
class FleetData:
    zone_health: pd.DataFrame  # report_store.zone_health
    zone_alerts: pd.DataFrame  # report_store.zone_alerts
    devices: pd.DataFrame  # report_store.device_health
    completeness: pd.DataFrame  # report_store.device_metric_completeness
    marts_built: bool = True


def _zone_label(frame: pd.DataFrame) -> pd.Series:
    return frame["site"] + " / " + frame["zone"]


def _hour(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True)


def health_figure(zone_health: pd.DataFrame) -> go.Figure:
    f = zone_health.assign(row=_zone_label(zone_health), hour=_hour(zone_health["hour"]))
    text = [f"{h:%b %d %H:00}: {x:.0%} healthy<br>{int(g)} of {int(e)} windows healthy,"
            f" {int(b)} breached" for h, x, g, e, b in
            zip(f["hour"], f["health"], f["healthy"], f["expected"], f["breached"], strict=True)]
    z = f.pivot(index="row", columns="hour", values="health")
    hover = f.assign(text=text).pivot(index="row", columns="hour", values="text")
    return figures.heatmap(z, "KPI health per zone and hour", figures.GOOD_SCALE, 0, 1,
                           hover="%{y}<br>%{customdata}", customdata=hover,
                           colorbar={"tickformat": ".0%", "title": {"text": "healthy"}})


def alerts_figure(zone_alerts: pd.DataFrame, zone_health: pd.DataFrame) -> go.Figure:
    """Alert counts on the same grid as the health heatmap (zones without alerts stay)."""
    grid = zone_health[["site", "zone", "hour"]].assign(hour=_hour(zone_health["hour"]))
    counts = zone_alerts.assign(hour=_hour(zone_alerts["hour"]))
    f = grid.merge(counts, on=["site", "zone", "hour"], how="left")
    f["alerts"] = pd.to_numeric(f["alerts"], errors="coerce").fillna(0)  # no alerts: object
    f = f.assign(row=_zone_label(f))
    z = f.pivot(index="row", columns="hour", values="alerts")
    # Counts in the cells while they are wide enough to read (about two days of hours).
    text = z.map(lambda v: "" if pd.isna(v) or v == 0 else f"{int(v)}") \
        if z.shape[1] <= 48 else None
    hover = f.assign(text=[f"{h:%b %d %H:00}: {int(n)} alerts opened"
                           for h, n in zip(f["hour"], f["alerts"], strict=True)]
                     ).pivot(index="row", columns="hour", values="text")
    top = max(float(z.max().max()) if z.size else 0.0, 1.0)
    return figures.heatmap(z, "Alerts opened per zone and hour", ALERT_SCALE, 0, top, text=text,
                           hover="%{y}<br>%{customdata}", customdata=hover,
                           colorbar={"title": {"text": "alerts"},
                                     "dtick": max(1, math.ceil(top / 4))})


def completeness_figure(completeness: pd.DataFrame, rows: int = COMPLETENESS_ROWS
                        ) -> go.Figure:
    per_device = completeness.groupby("device_name")["completeness"].mean().sort_values()
    worst = per_device.index[:rows]
    f = completeness[completeness["device_name"].isin(worst)]
    z = f.pivot(index="device_name", columns="metric", values="completeness").reindex(worst)
    text = z.map(lambda v: "" if pd.isna(v) else fmt_pct(v, 0 if v >= 0.9995 else 1))
    title = "Completeness per device and metric" + (
        f" (the {len(worst)} least complete of {len(per_device)} devices)"
        if len(per_device) > len(worst) else "")
    return figures.heatmap(z.clip(upper=1.0), title, figures.GOOD_SCALE, 0, 1, text=text,
                           hover="%{y}<br>%{x}: %{text} of expected readings",
                           colorbar={"tickformat": ".0%", "title": {"text": "received"}},
                           row_height=24)


def worst_devices_table(devices: pd.DataFrame, n: int = WORST_DEVICES) -> Markup:
    worst = devices.head(n)
    rows = pd.DataFrame({
        "device": worst["device_name"], "site": worst["site"], "zone": worst["zone"],
        "health": worst["health"], "completeness": worst["completeness"],
        "breached windows": worst["breached"], "alerts opened": worst["alerts"],
        "anomalous points": worst["anomalies"]})
    return table(rows, numeric=("health", "completeness", "breached windows", "alerts opened",
                                "anomalous points"),
                 formats={"health": fmt_pct, "completeness": fmt_pct,
                          "breached windows": fmt_int, "alerts opened": fmt_int,
                          "anomalous points": fmt_int})


def fleet_figures(data: FleetData) -> dict[str, float | int]:
    """Headline numbers of the range."""
    h, d = data.zone_health, data.devices
    expected = float(h["expected"].sum())
    return {
        "devices": len(d), "zones": int(h[["site", "zone"]].drop_duplicates().shape[0]),
        "health": float(h["healthy"].sum()) / expected if expected else float("nan"),
        "completeness": float(d["completeness"].mean()) if len(d) else float("nan"),
        "alerts": int(data.zone_alerts["alerts"].sum()) if len(data.zone_alerts) else 0,
        "breached": int(h["breached"].sum()),
    }


def summary_line(data: FleetData) -> str:
    if not data.marts_built or data.zone_health.empty:
        return "no KPI data in range"
    f = fleet_figures(data)
    return (f"{f['devices']} devices, health {fmt_pct(f['health'])}, completeness "
            f"{fmt_pct(f['completeness'])}, {f['alerts']} alerts opened")


def build_fleet_html(meta: PageMeta, data: FleetData) -> str:
    """The fleet page (pure: data in, HTML out)."""
    has_data = data.marts_built and not data.zone_health.empty
    context: dict[str, object] = {"has_data": has_data, "marts_built": data.marts_built,
                                  "healthy_completeness": report_store.HEALTHY_COMPLETENESS}
    if has_data:
        context |= {
            "figures_": fleet_figures(data),
            "health": figures.to_html(health_figure(data.zone_health)),
            "alerts": figures.to_html(alerts_figure(data.zone_alerts, data.zone_health)),
            "completeness": figures.to_html(completeness_figure(data.completeness)),
            "worst": worst_devices_table(data.devices),
            "worst_n": min(WORST_DEVICES, len(data.devices)),
        }
    return render("fleet.html", meta, figures=has_data, **context)


def collect(start: datetime, end: datetime) -> FleetData:
    with db.connect() as conn:
        if not report_store.marts_built(conn):
            empty = pd.DataFrame()
            return FleetData(empty, empty, empty, empty, marts_built=False)
        return FleetData(report_store.zone_health(conn, start, end),
                         report_store.zone_alerts(conn, start, end),
                         report_store.device_health(conn, start, end),
                         report_store.device_metric_completeness(conn, start, end))


def write_fleet_report(reports_dir: Path, start: datetime | None = None,
                       end: datetime | None = None, run_id: str | None = None, *,
                       hours: float = DEFAULT_HOURS) -> Path:
    """Build fleet.html for [start, end) (default: the `hours` before the newest data, in
    whole 5-minute windows) and record it; returns its path."""
    with db.connect() as conn:
        start, end = ranges.resolve(conn, start, end, hours, align="5min")
    data = collect(start, end)
    meta = page_meta(reports_dir, "fleet", "Fleet overview", run_id or catalog.cli_run_id(),
                     start, end)
    return publish(reports_dir, meta, build_fleet_html(meta, data), summary_line(data))
