"""Evaluation report: the detector backtest (core/backtest.py) against the simulator's labels.

    write_evaluation_report(reports_dir, result, config, run_id=None) -> Path
        from an in-memory BacktestResult: per anomaly type F1/precision/recall, time to detect,
        false alarms per device-day, a confusion table, every detector compared, and example
        plots of missed events and false alarms, re-simulated with the deterministic simulator
        (false-alarm examples need the alerts: run_backtest(..., keep_alerts=True)).
    write_evaluation_report_from_db(reports_dir, run_id=None, evaluation_run=None) -> Path
        from the newest rows of telemetry.evaluations: the same tables and bar charts, without
        example plots (the readings and alerts of a backtest are not stored).

Alerts carry no anomaly type: per-type rows report the type's recall with the detector's
overall precision, and F1 is their harmonic mean (docs/EVALUATION.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from markupsafe import Markup
from plotly.subplots import make_subplots

from core import db, features, report_store
from core.backtest import BacktestResult, simulate_range
from reports import catalog, figures
from reports.publish import publish
from reports.render import (
    MISSING,
    PageMeta,
    fmt_duration,
    fmt_fixed,
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_ts,
    page_meta,
    render,
    table,
)
from simulator import FleetConfig

EXAMPLES = 3  # of each: missed events, false alarms
MARGIN = timedelta(minutes=30)
MAX_EXAMPLE_SPAN = timedelta(hours=6)
PRODUCT = "fused"
SCORE_COLUMNS = ("f1", "precision", "recall")


@dataclass
class Example:
    kind: str  # "missed" | "false alarm"
    title: str
    readings: pd.DataFrame  # ts, metric, value (one device)
    metrics: list[str]
    labels: pd.DataFrame  # start_ts, end_ts, anomaly_type
    alert: dict[str, Any] | None = None  # start_ts, fired_ts, end_ts, peak_score, metric


@dataclass
class EvaluationData:
    table: pd.DataFrame  # telemetry.evaluations columns (one backtest run)
    matched: pd.DataFrame | None = None  # the product detector's labels with detected, ttd
    alerts: pd.DataFrame | None = None  # the product detector's alerts
    examples: list[Example] = field(default_factory=list)
    runs: pd.DataFrame | None = None  # report_store.evaluation_runs (DB variant)
    from_db: bool = False

    @property
    def params(self) -> dict[str, Any]:
        params = self.table["params"].iloc[0] if len(self.table) else {}
        return params if isinstance(params, dict) else {}

    @property
    def run(self) -> str:
        return str(self.table["run_id"].iloc[0]) if len(self.table) else MISSING


# ---------------------------------------------------------------------------------------------
# Pure: tables and figures.

def _overall(t: pd.DataFrame) -> pd.DataFrame:
    return t[t["anomaly_type"] == "all"].set_index("detector")


def per_type_figure(t: pd.DataFrame, detector: str = PRODUCT) -> go.Figure:
    rows = t[t["detector"] == detector].copy()
    rows["anomaly_type"] = rows["anomaly_type"].replace({"all": "all types"})
    return figures.bar_metrics(rows, "anomaly_type", SCORE_COLUMNS,
                               f"{detector}: F1, precision and recall per anomaly type")


def detectors_figure(t: pd.DataFrame) -> go.Figure:
    rows = t[t["anomaly_type"] == "all"]
    return figures.bar_metrics(rows, "detector", SCORE_COLUMNS,
                               "Every detector, all anomaly types")


def recall_figure(t: pd.DataFrame) -> go.Figure:
    rows = t[t["anomaly_type"] != "all"]
    z = rows.pivot(index="detector", columns="anomaly_type", values="recall")
    z = z.reindex([d for d in t["detector"].unique() if d in z.index])
    events = rows.drop_duplicates("anomaly_type").set_index("anomaly_type")["events"]
    z.columns = [f"{c} ({int(events.get(c, 0))})" for c in z.columns]
    text = z.map(lambda v: "" if pd.isna(v) else f"{v:.0%}")
    return figures.heatmap(z, "Recall per detector and anomaly type (labeled events)",
                           figures.GOOD_SCALE, 0, 1, text=text, hover="%{y} · %{x}: recall %{text}",
                           colorbar={"tickformat": ".0%", "title": {"text": "recall"}})


def false_alarm_figure(t: pd.DataFrame) -> go.Figure:
    rows = _overall(t)["false_alarms_per_device_day"].astype(float)
    # A log axis cannot draw 0: name those detectors instead.
    names = [f"{d} (none)" if v == 0 else d for d, v in rows.items()]
    fig = go.Figure(go.Bar(
        x=rows.to_numpy(), y=names, orientation="h",
        marker_color=["#dc2626" if d == PRODUCT else "#94a3b8" for d in rows.index],
        text=[fmt_num(v, 3) for v in rows.to_numpy()], textposition="outside",
        cliponaxis=False, hovertemplate="%{y}: %{x:.3f} per device-day<extra></extra>"))
    positive = rows[rows > 0]
    if len(positive) and positive.max() / max(positive.min(), 1e-9) > 100:
        fig.update_xaxes(type="log", dtick=1)
    fig.update_xaxes(title_text="false alarms per device-day")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(showlegend=False)
    return figures.styled(fig, 90 + 34 * len(rows), "False alarms per device-day").update_layout(
        margin={"t": 45, "r": 60})


def ttd_figure(t: pd.DataFrame, matched: pd.DataFrame | None) -> go.Figure:
    """Time to detect per anomaly type: every detected event (box and points) when the
    matched events are at hand, else the stored medians."""
    fig = go.Figure()
    if matched is not None and len(matched):
        hit = matched[matched["detected"]]
        for kind, part in hit.groupby("anomaly_type", sort=True):
            minutes = pd.to_timedelta(part["time_to_detect"]).dt.total_seconds() / 60
            fig.add_box(y=minutes, name=str(kind), boxpoints="all", jitter=0.4, pointpos=0,
                        marker={"size": 5, "color": "#2563eb"}, line={"color": "#1e3a8a"},
                        fillcolor="rgba(37, 99, 235, 0.12)",
                        hovertemplate="%{y:.1f} min<extra>" + str(kind) + "</extra>")
        fig.update_layout(showlegend=False)
        title = f"{PRODUCT}: time to detect (each detected event)"
    else:
        rows = t[(t["detector"] == PRODUCT) & (t["anomaly_type"] != "all")]
        fig.add_bar(x=rows["anomaly_type"], y=rows["median_time_to_detect_s"] / 60,
                    marker_color="#2563eb", hovertemplate="%{x}: %{y:.1f} min<extra></extra>",
                    text=[fmt_duration(v) for v in rows["median_time_to_detect_s"]],
                    textposition="outside", cliponaxis=False)
        title = f"{PRODUCT}: median time to detect per anomaly type"
    fig.update_yaxes(title_text="minutes", rangemode="tozero")
    return figures.styled(fig, 320, title)


def confusion(t: pd.DataFrame, alerts: pd.DataFrame | None = None,
              detector: str = PRODUCT) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per anomaly type: labeled events, detected, missed, recall; and the alert side:
    alerts raised, of which true and false (false = matching no label, derived from the stored
    false alarms per device-day so it agrees with the scores)."""
    rows = t[(t["detector"] == detector) & (t["anomaly_type"] != "all")]
    per_type = pd.DataFrame({"anomaly type": rows["anomaly_type"],
                             "labeled events": rows["events"], "detected": rows["detected"],
                             "missed": rows["events"] - rows["detected"],
                             "recall": rows["recall"]})
    overall = t[(t["detector"] == detector) & (t["anomaly_type"] == "all")]
    side: dict[str, Any] = {"alerts": None, "true": None, "false": None}
    if len(overall):
        o = overall.iloc[0]
        fa = o["false_alarms_per_device_day"]
        if pd.notna(fa):
            side["false"] = round(float(fa) * float(o["devices"]) * float(o["days"]))
        if alerts is not None:
            side["alerts"] = len(alerts)
            side["true"] = None if side["false"] is None else len(alerts) - side["false"]
        elif pd.notna(o["precision"]) and side["false"] is not None and o["precision"] < 1:
            total = side["false"] / (1 - float(o["precision"]))
            side["alerts"], side["true"] = round(total), round(total) - side["false"]
    return per_type, side


def scores_table(t: pd.DataFrame) -> Markup:
    rows = t[t["anomaly_type"] == "all"][
        ["detector", "events", "detected", "recall", "precision", "f1",
         "false_alarms_per_device_day", "median_time_to_detect_s"]]
    return table(rows, headers={"false_alarms_per_device_day": "false alarms / device-day",
                                "median_time_to_detect_s": "median time to detect",
                                "f1": "F1"},
                 numeric=("events", "detected", "recall", "precision", "f1",
                          "false_alarms_per_device_day", "median_time_to_detect_s"),
                 formats={"recall": fmt_fixed, "precision": fmt_fixed, "f1": fmt_fixed,
                          "false_alarms_per_device_day": lambda v: fmt_fixed(v, 3),
                          "median_time_to_detect_s": fmt_duration})


def example_figure(ex: Example) -> go.Figure:
    metrics = ex.metrics
    fig = make_subplots(rows=len(metrics), cols=1, shared_xaxes=True, vertical_spacing=0.06)
    for i, metric in enumerate(metrics, 1):
        part = ex.readings[ex.readings["metric"] == metric].sort_values("ts")
        x = pd.to_datetime(part["ts"], utc=True).dt.tz_localize(None)
        fig.add_scatter(x=x, y=part["value"], mode="lines", name=metric, row=i, col=1,
                        line={"color": "#1f2937", "width": 1.2}, connectgaps=False,
                        hovertemplate="%{x|%H:%M:%S} %{y:.4g}<extra>" + metric + "</extra>")
        fig.update_yaxes(title_text=metric, row=i, col=1)
    lo = ex.readings["ts"].min() if len(ex.readings) else None
    for label in ex.labels.itertuples(index=False):
        fig.add_vrect(x0=_naive(label.start_ts), x1=_naive(label.end_ts), fillcolor="#16a34a",
                      opacity=0.16, line_width=0, layer="below", row="all", col=1)
        fig.add_annotation(x=_naive(max(pd.Timestamp(label.start_ts), lo) if lo is not None
                                    else label.start_ts), y=1, yref="paper", xanchor="left",
                           yanchor="bottom", showarrow=False, text=f"labeled {label.anomaly_type}",
                           font={"color": "#166534", "size": 11})
    if ex.alert is not None:
        a = ex.alert
        end = a["end_ts"] if pd.notna(a["end_ts"]) else pd.Timestamp(a["fired_ts"]) + MARGIN
        fig.add_vrect(x0=_naive(a["fired_ts"]), x1=_naive(max(end, a["fired_ts"])),
                      fillcolor="rgba(220, 38, 38, 0.06)", row="all", col=1,
                      line={"color": "#dc2626", "width": 1, "dash": "dash"})
        fig.add_annotation(x=_naive(a["fired_ts"]), y=0, yref="paper", xanchor="left",
                           yanchor="bottom", showarrow=False,
                           text=f"alert (peak score {a['peak_score']:.2f})",
                           font={"color": "#b91c1c", "size": 11})
    fig.update_xaxes(tickformat="%H:%M\n%b %d", hoverformat="%Y-%m-%d %H:%M:%S")
    fig.update_layout(showlegend=False, margin={"t": 30})
    return figures.styled(fig, 150 + 150 * len(metrics))


def _naive(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return (ts.tz_convert("UTC") if ts.tzinfo else ts).tz_localize(None)


def summary_line(data: EvaluationData) -> str:
    o = _overall(data.table)
    if PRODUCT not in o.index:
        return "no evaluation rows"
    r = o.loc[PRODUCT]
    return (f"{PRODUCT} F1 {fmt_num(r['f1'])}, recall {fmt_num(r['recall'])}, precision "
            f"{fmt_num(r['precision'])}, {fmt_num(r['false_alarms_per_device_day'], 3)} false "
            f"alarms/device-day on {fmt_int(r['events'])} events")


def build_evaluation_html(meta: PageMeta, data: EvaluationData) -> str:
    """The evaluation page (pure: data in, HTML out)."""
    t = data.table
    if t.empty:
        return render("evaluation.html", meta, figures=False, has_data=False)
    per_type, side = confusion(t, data.alerts)
    params = data.params
    fleet = params.get("fleet", {})
    policy = params.get("policy", {})
    context = {
        "has_data": True, "from_db": data.from_db, "backtest_run": data.run,
        "row": t.iloc[0], "fleet": fleet, "policy": policy, "params": params,
        "tolerance": fmt_duration(params.get("tolerance_s")),
        "summary": summary_line(data),
        "per_type": figures.to_html(per_type_figure(t)),
        "detectors": figures.to_html(detectors_figure(t)),
        "recall": figures.to_html(recall_figure(t)),
        "false_alarms": figures.to_html(false_alarm_figure(t)),
        "ttd": figures.to_html(ttd_figure(t, data.matched)),
        "scores": scores_table(t),
        "confusion": table(per_type, numeric=("labeled events", "detected", "missed", "recall"),
                           formats={"recall": fmt_pct}, css="compact"),
        "side": side,
        "examples": [{"kind": ex.kind, "title": ex.title,
                      "figure": figures.to_html(example_figure(ex))} for ex in data.examples],
        "runs": None if data.runs is None or data.runs.empty else table(
            data.runs, numeric=("seed", "days", "devices", "f1", "recall", "precision"),
            formats={"created_at": fmt_ts, "f1": fmt_fixed, "recall": fmt_fixed,
                     "precision": fmt_fixed}, css="compact"),
    }
    return render("evaluation.html", meta, figures=True, **context)


# ---------------------------------------------------------------------------------------------
# Examples: re-simulate one device and window (the simulator is deterministic).

def false_alarms(alerts: pd.DataFrame, labels: pd.DataFrame, tolerance: timedelta,
                 range_end: pd.Timestamp) -> pd.DataFrame:
    """Alerts matching no label (same device, metric in the label's or "multi", alert from
    firing to end overlapping the label widened by `tolerance`)."""
    if alerts.empty:
        return alerts
    a = alerts.reset_index(drop=True).assign(alert_idx=lambda f: np.arange(len(f)))
    spans = labels.explode("metrics").rename(columns={"metrics": "label_metric"})
    pairs = a.merge(spans[["device_id", "label_metric", "start_ts", "end_ts"]].rename(
        columns={"start_ts": "l_start", "end_ts": "l_end"}), on="device_id")
    tol = pd.Timedelta(tolerance)
    a_start = pd.to_datetime(pairs["fired_ts"], utc=True)
    a_end = pd.to_datetime(pairs["end_ts"], utc=True).fillna(range_end)
    hit = ((pairs["metric"] == pairs["label_metric"]) | (pairs["metric"] == "multi")) & \
        (a_start < pairs["l_end"] + tol) & (np.maximum(a_end, a_start) >= pairs["l_start"] - tol)
    matched = set(pairs.loc[hit, "alert_idx"])
    return a[~a["alert_idx"].isin(matched)].drop(columns="alert_idx")


def _window(start: Any, end: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    lo = pd.Timestamp(start) - MARGIN
    hi = min(pd.Timestamp(end), pd.Timestamp(start) + MAX_EXAMPLE_SPAN) + MARGIN
    return lo, hi


def _simulated(config: FleetConfig, device_id: int, metrics: list[str], lo: pd.Timestamp,
               hi: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The device's readings in [lo, hi) and its labels there on any of `metrics`."""
    data = simulate_range(config, lo.to_pydatetime(), hi.to_pydatetime())
    readings = features.with_metric_names(data.readings[data.readings["device_id"] == device_id])
    labels = data.labels[(data.labels["device_id"] == device_id)
                         & (data.labels["end_ts"] > lo) & (data.labels["start_ts"] < hi)]
    labels = labels[labels["metrics"].map(lambda ms: bool(set(ms) & set(metrics)))]
    return readings[["ts", "metric", "value"]], labels


def examples(result: BacktestResult, config: FleetConfig, n: int = EXAMPLES) -> list[Example]:
    """Up to n missed events and n false alarms of the product detector, re-simulated."""
    out: list[Example] = []
    matched = result.matched[result.matched["detector"] == PRODUCT]
    missed = matched[~matched["detected"].astype(bool)].sort_values("start_ts")
    for label in missed.head(n).to_dict("records"):
        lo, hi = _window(label["start_ts"], label["end_ts"])
        metrics = [m for m in list(label["metrics"]) if m in features.PCA_METRICS][:2]
        readings, labels = _simulated(config, int(label["device_id"]), metrics, lo, hi)
        out.append(Example("missed", f"device {label['device_id']}: {label['anomaly_type']} on "
                           f"{', '.join(list(label['metrics']))} from {fmt_ts(label['start_ts'])}"
                           f" to {fmt_ts(label['end_ts'])} (magnitude {label['magnitude']:.2f})",
                           readings, metrics, labels))
    alerts = result.alerts.get(PRODUCT)
    if alerts is None or alerts.empty:
        return out
    params = result.metadata.get("params", {})
    tolerance = timedelta(seconds=float(params.get("tolerance_s", 300)))
    test_end = pd.Timestamp(params.get("test_end") or alerts["fired_ts"].max())
    labels_all = matched[["device_id", "metrics", "start_ts", "end_ts"]]
    false = false_alarms(alerts, labels_all, tolerance, test_end)
    for alert in false.sort_values("peak_score", ascending=False).head(n).to_dict("records"):
        end = alert["end_ts"] if pd.notna(alert["end_ts"]) else alert["fired_ts"] + MARGIN
        lo, hi = _window(alert["start_ts"], end)
        metric = alert["metric"] if alert["metric"] in features.PCA_METRICS else "co2"
        readings, labels = _simulated(config, int(alert["device_id"]), [metric], lo, hi)
        out.append(Example("false alarm", f"device {alert['device_id']}: {alert['metric']} alert"
                           f" fired {fmt_ts(alert['fired_ts'])}, peak score "
                           f"{alert['peak_score']:.2f}, no label within "
                           f"{fmt_duration(tolerance.total_seconds())}", readings, [metric],
                           labels, alert))
    return out


# ---------------------------------------------------------------------------------------------
# Writers.

def _meta(reports_dir: Path, data: EvaluationData, run_id: str | None) -> PageMeta:
    p = data.params
    start = pd.Timestamp(p["test_start"]) if p.get("test_start") else None
    end = pd.Timestamp(p["test_end"]) if p.get("test_end") else None
    return page_meta(reports_dir, "evaluation", "Detector evaluation (backtest)",
                     run_id or catalog.cli_run_id(), start, end)


def write_evaluation_report(reports_dir: Path, result: BacktestResult, config: FleetConfig,
                            run_id: str | None = None, *, n_examples: int = EXAMPLES) -> Path:
    """Build evaluation.html from an in-memory backtest (with example plots) and record it."""
    matched = result.matched[result.matched["detector"] == PRODUCT]
    data = EvaluationData(result.table, matched=matched,
                          alerts=result.alerts.get(PRODUCT),
                          examples=examples(result, config, n_examples))
    meta = _meta(reports_dir, data, run_id)
    return publish(reports_dir, meta, build_evaluation_html(meta, data), summary_line(data))


def write_evaluation_report_from_db(reports_dir: Path, run_id: str | None = None, *,
                                    evaluation_run: str | None = None) -> Path:
    """Build evaluation.html from telemetry.evaluations (the newest backtest, or
    `evaluation_run`), without example plots, and record it."""
    with db.connect() as conn:
        rows = report_store.latest_evaluation(conn, evaluation_run)
        runs = report_store.evaluation_runs(conn)
    data = EvaluationData(rows, runs=runs, from_db=True)
    meta = _meta(reports_dir, data, run_id)
    return publish(reports_dir, meta, build_evaluation_html(meta, data), summary_line(data))
