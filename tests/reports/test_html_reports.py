"""HTML reports end to end on a real database: a small simulated history loaded through the
loader, KPIs built by dbt, models trained and six hours scored (alerts raised by the real alert
machine), plus Great Expectations and drift rows inserted as the quality and drift code writes
them. Every report must exist, have its sections and figures, and load nothing from a network.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import psycopg
import pytest
import typer
from typer.testing import CliRunner

from cli.report import report_app
from core import db as core_db
from core import dbt_runner, detection_store, ingest, scoring
from core.backtest import BacktestResult, run_backtest
from core.features import PCA_METRICS
from core.ingest import Window, chunks
from core.settings import get_settings
from reports import catalog
from reports.alert_report import (
    AlertPlot,
    AlertReportData,
    alert_figure,
    build_alert_html,
    pca_figure,
    write_alert_report,
)
from reports.drift_summary import DriftData, build_drift_html, write_drift_summary_report
from reports.evaluation_report import write_evaluation_report, write_evaluation_report_from_db
from reports.fleet_report import write_fleet_report
from reports.quality_report import write_quality_report
from reports.render import fmt_ts, page_meta, plotly_bundle
from simulator import FleetConfig, simulate

END = datetime(2026, 11, 20, tzinfo=UTC)
FLEET = FleetConfig(seed=42, sites=2, zones_per_site=2, devices_per_zone=1)  # 4 devices
BACKTEST_FLEET = FleetConfig(seed=2, sites=1, zones_per_site=3, devices_per_zone=2)
RUN = "test:reports"
FIGURE = 'class="plotly-graph-div"'
EVIDENTLY_FILE = "drift/evidently-current.html"


# ---------------------------------------------------------------------------------------------
# Data.

@dataclass(frozen=True)
class Filled:
    url: str
    train_end: datetime
    quarantine_rules: list[str]


def fill(config: FleetConfig = FLEET, train_hours: float = 12, score_hours: float = 6
         ) -> tuple[datetime, datetime]:
    """Load train_hours + score_hours ending at END, build KPIs, train on the first part and
    score the rest (library calls: the flows are thin recipes over exactly these)."""
    start = END - timedelta(hours=train_hours + score_hours)
    train_end = start + timedelta(hours=train_hours)
    ingest.register_fleet(config)
    for piece in chunks(Window(start, END), timedelta(hours=3)):
        ingest.load_simulated(simulate(config, piece.start, piece.end), piece, source="backfill")
    dbt_runner.run_dbt(["build"], vars={"rebuild_from": (start - timedelta(hours=2)).isoformat()})
    scoring.train_models(start, train_end)
    for piece in chunks(Window(train_end, END), timedelta(hours=1)):
        scoring.score_window(piece.start, piece.end)
    return start, train_end


def add_quality_results(conn: psycopg.Connection) -> None:
    """GX rows as the quality code stores them: a raw_batch suite per batch and a kpi suite per
    window, some failing with samples."""
    batches = conn.execute("SELECT batch_id, window_start, window_end FROM telemetry.batches"
                           " ORDER BY batch_id").fetchall()
    rows = []
    for i, (batch_id, ws, we) in enumerate(batches):
        for name, kind, column, severity in (
            ("value_within_hard_limits", "expect_column_values_to_be_between", "value", "error"),
            ("device_known", "expect_column_values_to_be_in_set", "device_id", "warning"),
        ):
            failed = (i + len(name)) % 3 == 0
            sample = [{"device_id": 2, "metric_id": 1, "ts": ws.isoformat(), "value": 12000.0}]
            rows.append(("raw_batch", f"batch {batch_id}", batch_id, ws, we, name, kind, column,
                         severity, not failed, 4000, 7 if failed else 0, 0.175 if failed else 0,
                         json.dumps(sample if failed else [])))
        failed = i % 2 == 1
        sample = [{"device_id": 3, "metric": "co2", "completeness": 0.62}]
        rows.append(("kpi", f"fct_kpi_5m {ws:%Y-%m-%d %H:%M}", None, ws, we,
                     "completeness_at_least_0_9", "expect_column_values_to_be_between",
                     "completeness", "warning", not failed, 192, 3 if failed else 0,
                     1.6 if failed else 0, json.dumps(sample if failed else [])))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry.quality_results (suite, target, batch_id, window_start,"
            " window_end, expectation, expectation_type, column_name, severity, success,"
            " element_count, unexpected_count, unexpected_percent, unexpected_sample, run_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'test')", rows)


def add_alerts(conn: psycopg.Connection) -> None:
    """A fleet-level data-quality alert (no device), and a device alert if scoring raised
    none (the small history usually raises a few)."""
    at = END - timedelta(hours=1)
    conn.execute(
        "INSERT INTO telemetry.alerts (kind, device_id, metric, state, severity, opened_at,"
        " fired_at, last_seen_at, reason, detectors) VALUES ('data', NULL,"
        " 'quality:raw_batch:value_within_hard_limits', 'firing', 'high', %s, %s, %s,"
        " 'raw_batch: value_within_hard_limits failed on batch 6', ARRAY['quality'])",
        (at, at, at))
    if not conn.execute("SELECT count(*) FROM telemetry.alerts WHERE kind = 'device'"
                        ).fetchone()[0]:
        conn.execute(
            "INSERT INTO telemetry.alerts (kind, device_id, metric, state, severity, opened_at,"
            " fired_at, last_seen_at, peak_score, peak_ts, reason) VALUES ('device', 1, 'co2',"
            " 'firing', 'medium', %s, %s, %s, 2.5, %s, 'test')", (at, at, at, at))


def add_drift_results(conn: psycopg.Connection) -> None:
    rows = []
    for site in ("all", "site-01", "site-02"):
        for metric, p_value in (("co2", 0.003), ("temperature", 0.41), ("humidity", 0.22),
                                ("occupancy", 0.04)):
            rows.append((END - timedelta(days=8), END - timedelta(days=1),
                         END - timedelta(days=1), END, site, metric, p_value, p_value < 0.05))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry.drift_results (run_id, reference_start, reference_end,"
            " current_start, current_end, site, metric, method, statistic, threshold, drifted,"
            " reference_rows, current_rows, reference_mean, current_mean, report_path)"
            " VALUES ('test', %s, %s, %s, %s, %s, %s, 'K-S p_value', %s, 0.05, %s, 60000,"
            " 8600, 600, 640, %s)", [(*r, EVIDENTLY_FILE) for r in rows])


@pytest.fixture(scope="module")
def filled(pg_admin_url: str, template_db: str, worker_dbt_target: Path) -> Iterator[Filled]:
    """One filled database for the module (the `db` fixture is per test; filling takes ~10 s)."""
    name = f"t_reports_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = core_db.with_dbname(pg_admin_url, name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url)
        mp.setenv("TELEMETRY_DBT_TARGET_DIR", str(worker_dbt_target))
        core_db.reset_caches()
        try:
            _, train_end = fill()
            with psycopg.connect(url, autocommit=True) as conn:
                add_quality_results(conn)
                add_alerts(conn)
                add_drift_results(conn)
                rules = [r[0] for r in conn.execute(
                    "SELECT DISTINCT rule FROM telemetry.quarantine ORDER BY 1")]
            yield Filled(url, train_end, rules)
        finally:
            core_db.reset_caches()
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def backtest() -> BacktestResult:
    return run_backtest(BACKTEST_FLEET, train_days=1, test_days=2, keep_alerts=True)


@pytest.fixture(scope="module")
def built(filled: Filled, backtest: BacktestResult, tmp_path_factory: pytest.TempPathFactory
          ) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    evidently = out / EVIDENTLY_FILE
    evidently.parent.mkdir(parents=True)
    evidently.write_text("<html><body>Evidently stand-in</body></html>")
    return {
        "alerts": write_alert_report(out, run_id=RUN),
        "fleet": write_fleet_report(out, run_id=RUN),
        "quality": write_quality_report(out, run_id=RUN),
        "evaluation": write_evaluation_report(out, backtest, BACKTEST_FLEET, RUN),
        "drift": write_drift_summary_report(out, run_id=RUN),
        "index": out / "index.html",
    }


# ---------------------------------------------------------------------------------------------
# HTML checks.

class _Tags(HTMLParser):
    """src/href of script, link, img and iframe tags; headings; anchors."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []
        self.links: list[str] = []
        self.headings: list[str] = []
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag in ("script", "link", "img", "iframe"):
            self.refs += [(tag, values[k]) for k in ("src", "href") if k in values]
        if tag == "a" and "href" in values:
            self.links.append(values["href"])
        if tag in ("h1", "h2", "h3"):
            self._heading = []

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append(" ".join("".join(self._heading).split()))
            self._heading = None


def parse(html: str) -> _Tags:
    tags = _Tags()
    tags.feed(html)
    return tags


def external(html: str) -> list[tuple[str, str]]:
    return [(t, v) for t, v in parse(html).refs if re.match(r"(?i)\s*(https?:)?//", v)]


def test_the_external_reference_check_finds_cdn_tags():
    page = ('<script src="https://cdn.plot.ly/plotly.min.js"></script>'
            '<link rel="stylesheet" href="//fonts.example/x.css"><img src="local.png">'
            '<script>var u = "<img src=https://inside.a/script>";</script>')
    assert external(page) == [("script", "https://cdn.plot.ly/plotly.min.js"),
                              ("link", "//fonts.example/x.css")]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Built reports.

def test_every_report_is_one_self_contained_file(built):
    bundle_head = str(plotly_bundle())[:200]
    for name, path in built.items():
        html = read(path)
        assert path.is_file() and path.stat().st_size < 8_000_000, name
        assert external(html) == [], name
        assert html.count(bundle_head) == (0 if name == "index" else 1), name
        tags = parse(html)
        assert tags.headings[0] in {"Alert report", "Fleet overview", "Data quality report",
                                    "Detector evaluation (backtest)", "Drift summary",
                                    "Telemetry reports"}
        assert RUN in html and "Time range" in html and "Generated" in html
        nav = {href for href in tags.links if not href.startswith("#")}
        assert {"index.html", "alerts.html", "fleet.html", "quality.html", "evaluation.html",
                "drift-summary.html"} <= nav, name


def test_alert_report_plots_device_alerts_and_lists_fleet_alerts(built, filled):
    html = read(built["alerts"])
    headings = parse(html).headings
    assert {"Alerts by severity", "Device alerts in detail", "Data and fleet alerts"} <= set(
        headings)
    with psycopg.connect(filled.url) as conn:
        device_alerts = conn.execute("SELECT count(*) FROM telemetry.alerts WHERE kind ="
                                     " 'device'").fetchone()[0]
    plotted = min(device_alerts, 20)
    assert sum(h.startswith("#") for h in headings) == plotted
    assert html.count(FIGURE) >= plotted + 1  # a time series each, PCA bars where known
    assert "band: trailing mean ± 8" in html and "anomalous (fused score ≥ 1)" in html
    assert "fleet (no device)" in html
    assert "quality:<wbr>raw_batch:<wbr>value_within_hard_limits" in html  # may wrap at ":"
    assert not re.search(r"\d\d:\d\d:\d\d\.\d{6}", html.split("<script")[0])


def test_alert_report_figures_draw_in_a_browser(built, chromium):
    """The figures are plain dicts on the page (no plotly validation when built): Chromium
    must draw every one, with its band, series and shapes, and report no error."""
    page = chromium.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto(built["alerts"].resolve().as_uri(), wait_until="load")
    divs = page.locator(".plotly-graph-div")
    assert divs.count() >= 2
    drawn = page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')].map(
        d => ({traces: d.querySelectorAll('.trace').length,
               shapes: d.querySelectorAll('.shapelayer path').length,
               svg: d.querySelectorAll('.main-svg').length}))""")
    assert all(d["svg"] > 0 and d["traces"] > 0 for d in drawn), drawn
    series = [d for d in drawn if d["traces"] >= 4]  # band (2), mean, value, anomalies
    assert series and all(d["shapes"] >= 1 for d in series)  # at least the alert's span
    assert errors == []
    page.close()


def test_fleet_report_has_heatmaps_worst_devices_and_completeness(built):
    html = read(built["fleet"])
    assert {"Fleet at a glance", "Health by site and zone", "Worst devices",
            "Completeness"} <= set(parse(html).headings)
    assert html.count(FIGURE) == 3
    assert "KPI health</b> = healthy 5-minute windows" in html
    assert "site-01 \\u002f zone-01" in html  # a heatmap row (plotly escapes "/" in JSON)
    assert ">site-02/zone-02/dev-01</td>" in html  # the worst-devices table


def test_quality_report_shows_suites_failures_and_quarantine_by_rule(built, filled):
    html = read(built["quality"])
    assert {"Great Expectations results per suite", "Failing expectations", "Latest failures",
            "Quarantine", "Rows by rule", "Examples"} <= set(parse(html).headings)
    assert html.count(FIGURE) == 3  # raw_batch, kpi, quarantine
    assert "value_within_hard_limits" in html and "12000.0" in html  # a sample row
    assert filled.quarantine_rules, "the simulated faults should have been quarantined"
    for rule in filled.quarantine_rules:
        assert rule in html


def test_evaluation_report_from_a_backtest_has_scores_confusion_and_examples(built, backtest):
    html = read(built["evaluation"])
    headings = parse(html).headings
    assert {"Per anomaly type", "Confusion table (fused)", "Detectors compared",
            "Examples: missed events and false alarms"} <= set(headings)
    examples = [h for h in headings if h.startswith(("missed", "false alarm"))]
    assert examples and any(h.startswith("false alarm") for h in examples)
    assert html.count(FIGURE) == 5 + len(examples)
    fused = backtest.table[(backtest.table["detector"] == "fused")
                           & (backtest.table["anomaly_type"] == "all")].iloc[0]
    assert f"fused F1 {fused['f1']:.2f}" in html


def test_evaluation_report_from_the_database_says_how_to_get_examples(filled, backtest,
                                                                      tmp_path):
    with psycopg.connect(filled.url) as conn:
        detection_store.save_evaluation(conn, backtest.table)
    html = read(write_evaluation_report_from_db(tmp_path, RUN))
    headings = parse(html).headings
    assert "Detectors compared" in headings and "Recent backtests" in headings
    assert "Examples: missed events and false alarms" not in headings
    assert "--backtest" in html and html.count(FIGURE) == 5 and external(html) == []


def test_drift_summary_links_the_evidently_report(built):
    html = read(built["drift"])
    tags = parse(html)
    assert {"Latest drift check", "Evidently report", "Results per site and metric"} <= set(
        tags.headings)
    assert EVIDENTLY_FILE in tags.links
    assert html.count(FIGURE) == 1 and "2 of 4 metrics drifted (co2, occupancy)" in html


def test_index_lists_every_report_with_its_run(built):
    out = built["index"].parent
    links = parse(read(built["index"])).links
    for name in ("alerts", "fleet", "quality", "evaluation", "drift"):
        assert built[name].name in links
    entries = {e.name: e for e in catalog.entries(out)}
    assert set(entries) == {"alerts", "fleet", "quality", "evaluation", "drift"}
    assert {e.run_id for e in entries.values()} == {RUN}
    assert entries["fleet"].range_end == END.isoformat()
    assert all(e.summary for e in entries.values())


def test_cli_builds_every_report_by_default_and_one_on_request(filled, tmp_path, monkeypatch):
    app = typer.Typer()
    app.add_typer(report_app, name="report")
    monkeypatch.setenv("TELEMETRY_REPORTS_DIR", str(tmp_path / "default"))
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["report"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    index = tmp_path / "default" / "index.html"
    assert result.output.strip().splitlines()[-1].endswith(str(index))
    assert {p.name for p in index.parent.glob("*.html")} == {
        "index.html", "alerts.html", "fleet.html", "quality.html", "evaluation.html",
        "drift-summary.html"}

    result = runner.invoke(app, ["report", "fleet", "--out", str(tmp_path / "one"),
                                 "--since", "2026-11-19T18:00:00", "--hours", "3"])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "one" / "fleet.html") in result.output
    entry = catalog.entries(tmp_path / "one")[0]
    assert (entry.range_start, entry.range_end) == ("2026-11-19T18:00:00+00:00",
                                                    END.isoformat())


# ---------------------------------------------------------------------------------------------
# Pure builders.

def test_pages_say_plainly_when_there_is_nothing(tmp_path):
    empty_alerts = pd.DataFrame(columns=["alert_id", "kind", "device_id", "severity", "state"])
    counts = pd.DataFrame(columns=["severity", "kind", "is_open", "n"])
    models = pd.DataFrame(columns=["detector", "version", "train_start", "train_end"])
    meta = page_meta(tmp_path, "alerts", "Alert report", RUN)
    html = build_alert_html(meta, AlertReportData(empty_alerts, counts, models))
    assert "No alerts were open or active in this range." in html
    assert "No trained models yet" in html and FIGURE not in html

    meta = page_meta(tmp_path, "drift", "Drift summary", RUN)
    html = build_drift_html(meta, DriftData(pd.DataFrame(), pd.DataFrame()))
    assert "telemetry run drift-report" in html and "No drift results yet" in html


def test_alert_figure_draws_band_anomalies_labels_and_limit():
    ts = pd.date_range(END, periods=200, freq="10s")
    value = pd.Series(500.0, index=range(200)).where(lambda s: s.index != 120, 1200.0)
    series = pd.DataFrame({"ts": ts, "value": value, "baseline_mean": 500.0,
                           "lower": 480.0, "upper": 520.0,
                           "score": (value > 1000).astype(float) * 3, "fired_by": "rolling_z"})
    labels = pd.DataFrame({"start_ts": [ts[118]], "end_ts": [ts[125]],
                           "anomaly_type": ["spike"]})
    alert = {"alert_id": 7, "metric": "co2", "opened_at": ts[120], "resolved_at": ts[122],
             "last_seen_at": ts[122]}
    spec = alert_figure(AlertPlot(alert, series, labels, threshold=8.0, limit=1000.0))
    fig = go.Figure(spec)  # a plain dict on the page: it must still pass plotly's schema
    names = [t.name for t in fig.data]
    assert "band: trailing mean ± 8\N{GREEK SMALL LETTER SIGMA}" in names and "co2" in names
    anomalous = next(t for t in fig.data if (t.name or "").startswith("anomalous"))
    assert list(anomalous.y) == [1200.0]
    assert [list(pair) for pair in anomalous.customdata] == [[3.0, "rolling_z"]]
    shapes = [s.type for s in fig.layout.shapes]
    assert shapes.count("rect") == 2 and "line" in shapes  # label, alert; limit line
    label_band = next(s for s in fig.layout.shapes if s.type == "rect")
    assert pd.Timestamp(label_band.x0) == ts[118].tz_localize(None)
    assert fig.layout.yaxis.title.text == "co2" and fig.layout.height == 340


def test_pca_figure_is_a_valid_bar_of_every_metric_share():
    fig = go.Figure(pca_figure({"co2": 0.75, "temperature": 0.25}, "co2"))
    bar = fig.data[0]
    assert bar.type == "bar" and list(bar.y) == list(PCA_METRICS)
    shares = dict(zip(bar.y, bar.x, strict=True))
    assert shares["co2"] == 0.75 and shares["humidity"] is None  # no share: no bar
    assert bar.marker.color[list(bar.y).index("co2")] == "#dc2626"
    assert fmt_ts(pd.Timestamp("2026-11-19 06:00:00.123456+00:00")) == "2026-11-19 06:00:00"


def test_a_report_that_cannot_be_written_says_why_and_leaves_no_partial_file(tmp_path):
    from reports.render import ReportWriteError, write_atomic

    page = tmp_path / "out" / "alerts.html"
    write_atomic(page, "<p>first</p>")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    with pytest.raises(ReportWriteError, match=r"blocked is a file, not a directory") as err:
        write_atomic(blocked / "alerts.html", "<p>second</p>")
    assert isinstance(err.value, OSError) and "telemetry report" in str(err.value)
    assert page.read_text() == "<p>first</p>"  # an earlier report is kept whole
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["alerts.html", "blocked", "out"]


def test_a_disk_filling_up_mid_write_keeps_the_old_report_and_no_temporary_file(
        tmp_path, monkeypatch):
    import errno

    from reports.render import ReportWriteError, write_atomic

    page = tmp_path / "alerts.html"
    write_atomic(page, "<p>first</p>")

    def disk_full(self: Path, text: str, encoding: str | None = None) -> int:
        with open(self, "w", encoding=encoding) as f:  # half of it lands, then the disk is full
            f.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(ReportWriteError, match="No space left on device") as err:
        write_atomic(page, "<p>second, longer</p>")
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert page.read_text() == "<p>first</p>"
    assert [p.name for p in tmp_path.iterdir()] == ["alerts.html"]
