"""Drift of the fleet's metrics between a reference and a current period, decided by Evidently.

Input frames have one row per device x 5-minute window: `device_id`, `window_start` (UTC) and
one column per metric holding the window's mean (the KPI mart fct_kpi_5m, pivoted wide).

How drift is decided
- Method: Evidently's normed Wasserstein distance (`wasserstein`), pinned. Left to itself
  Evidently picks K-S p-values for references of at most 1000 rows and this distance above, so
  what a result means would depend on the fleet's size.
- Calendar-matched reference: the metrics follow the office day and week (occupancy is ~0 at
  night and at weekends). Against the raw previous week every clean day drifted at Evidently's
  default threshold (measured: 0.15-0.4 on weekdays, ~0.6 at weekends). So the reference is
  resampled, with replacement and a fixed seed, to the current period's mix of weekday/weekend
  x hour of day. A reference without the current's day types (two weekdays for a Saturday) is
  reported as insufficient: compared anyway, every metric would "drift" by the office week.
- Threshold: THRESHOLD reference standard deviations. A metric drifts when the distance between
  its current and matched reference distributions reaches half its spread over the whole
  reference. Evidently norms the distance by the std of the reference it is given (the matched
  one; at a weekend a fraction of the week's), so the threshold handed to Evidently for a column
  is THRESHOLD x std(whole reference) / std(matched reference). Evidently's test status (FAIL =
  drifted) is the verdict; `statistic` and `threshold` are its value and threshold.
- Measured on simulated fleets with anomalies (each of 14 days against its previous 7): clean
  days score 0.02-0.25 for 45 devices, up to 0.37 for a site of 15 and up to 0.67 for a fleet of
  4 (the devices' own day-to-day wander does not average out over few devices); a metric shifted
  by +0.5 std scores 0.5-0.84, by +2 std about 2.
- Large periods are sampled (MAX_ROWS rows each, fixed seed) so a run's cost does not grow with
  the fleet. Row counts are the periods' own; `reference_mean` is the matched reference's (what
  the current period is compared with), `current_mean` the whole current period's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # Evidently takes ~4 s to import: only runs that compare pay for it
    from evidently.core.report import Snapshot

METRICS: tuple[str, ...] = ("co2", "temperature", "humidity", "occupancy")
METHOD = "wasserstein"
THRESHOLD = 0.5  # in standard deviations of the whole reference
MIN_ROWS = 288  # per period and metric: one device-day of 5-minute windows
MAX_ROWS = 50_000  # per period: Evidently's cost grows with rows, its verdict barely
SEED = 0  # sampling is deterministic: the same inputs give the same verdict
GRAIN = pd.Timedelta(minutes=5)
MIN_COVERAGE = 0.95  # share of current rows whose calendar stratum the reference must have
RESULT_COLUMNS = ["metric", "method", "statistic", "threshold", "drifted", "reference_rows",
                  "current_rows", "reference_mean", "current_mean"]


class InsufficientDataError(ValueError):
    """A period has too few rows for a verdict (never reported as "no drift")."""


@dataclass(frozen=True)
class DriftComparison:
    table: pd.DataFrame  # one row per metric, RESULT_COLUMNS
    snapshot: Snapshot

    @property
    def drifted(self) -> list[str]:
        return self.table.loc[self.table["drifted"], "metric"].tolist()


@dataclass(frozen=True)
class Periods:
    """[reference_start, reference_end = current_start) then [current_start, current_end)."""

    reference_start: datetime
    current_start: datetime
    current_end: datetime

    @classmethod
    def ending(cls, current_end: datetime, current_days: float, reference_days: float
               ) -> Periods:
        current_start = current_end - timedelta(days=current_days)
        return cls(current_start - timedelta(days=reference_days), current_start, current_end)

    @property
    def reference(self) -> tuple[datetime, datetime]:
        return self.reference_start, self.current_start

    @property
    def current(self) -> tuple[datetime, datetime]:
        return self.current_start, self.current_end

    def split(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The rows of `frame` (by window_start) in the reference and in the current period."""
        start = pd.to_datetime(frame["window_start"], utc=True)
        in_current = (start >= self.current_start) & (start < self.current_end)
        in_reference = (start >= self.reference_start) & (start < self.current_start)
        return frame[in_reference], frame[in_current]


def compare(reference: pd.DataFrame, current: pd.DataFrame,
            metrics: tuple[str, ...] = METRICS, threshold: float = THRESHOLD,
            min_rows: int = MIN_ROWS, max_rows: int = MAX_ROWS, seed: int = SEED
            ) -> DriftComparison:
    """Per-metric drift of `current` against the (already clean) `reference`.

    Raises InsufficientDataError when a period has fewer than `min_rows` values of a metric or
    the reference does not cover the current period's calendar."""
    _check_rows(reference, current, metrics, min_rows)
    rng = np.random.default_rng(seed)
    matched = match_calendar(reference, current, rng, max_rows)
    tested = _sample(current, max_rows, rng)
    limits = _evidently_thresholds(reference, matched, metrics, threshold)
    snapshot = run_report(matched[list(metrics)], tested[list(metrics)], limits)
    table = _table(snapshot, metrics).assign(
        reference_rows=reference[list(metrics)].count().to_numpy(),
        current_rows=current[list(metrics)].count().to_numpy(),
        reference_mean=matched[list(metrics)].mean().to_numpy(),
        current_mean=current[list(metrics)].mean().to_numpy(),
    )
    return DriftComparison(table[RESULT_COLUMNS], snapshot)


def run_report(reference: pd.DataFrame, current: pd.DataFrame,
               thresholds: dict[str, float]) -> Snapshot:
    """Evidently's DataDriftPreset with the pinned method and per-column thresholds."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = list(thresholds)
    definition = DataDefinition(numerical_columns=columns)
    report = Report([DataDriftPreset(columns=columns, method=METHOD,
                                     per_column_threshold=thresholds)], include_tests=True)
    return report.run(Dataset.from_pandas(current, data_definition=definition),
                      Dataset.from_pandas(reference, data_definition=definition))


def save_html(snapshot: Snapshot, path: Path) -> Path:
    """Write Evidently's self-contained HTML report (no external scripts or styles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path


def _check_rows(reference: pd.DataFrame, current: pd.DataFrame, metrics: tuple[str, ...],
                min_rows: int) -> None:
    short = [f"{name} period has {int(n)} rows of {metric}"
             for name, frame in (("reference", reference), ("current", current))
             for metric, n in frame.reindex(columns=list(metrics)).count().items()
             if n < min_rows]
    if short:
        raise InsufficientDataError(
            f"insufficient data for a drift verdict (needs {min_rows} per period and metric): "
            + "; ".join(short))


def calendar_strata(frame: pd.DataFrame) -> np.ndarray:
    """Weekday/weekend x hour of day of each row, as one integer (UTC, like the simulator's
    office schedule; real sites would need their local time here)."""
    start = pd.DatetimeIndex(pd.to_datetime(frame["window_start"], utc=True))
    return (start.dayofweek.to_numpy() >= 5) * 100 + start.hour.to_numpy()


def match_calendar(reference: pd.DataFrame, current: pd.DataFrame, rng: np.random.Generator,
                   max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """The reference resampled (with replacement) to the current period's calendar mix.

    Raises InsufficientDataError when the reference lacks the calendar of more than
    1 - MIN_COVERAGE of the current rows (a weekday reference for a weekend): comparing them
    would report the office week as drift."""
    ref_strata = pd.Series(calendar_strata(reference))
    wanted = pd.Series(calendar_strata(current)).value_counts(normalize=True)
    available = ref_strata.value_counts()
    covered = float(wanted[wanted.index.isin(available.index)].sum())
    if covered < MIN_COVERAGE:
        raise InsufficientDataError(
            f"the reference period covers the weekday/weekend x hour of only {covered:.0%} of"
            " the current rows: lengthen it (7 days cover every day type)")
    weights = ref_strata.map(wanted / available).fillna(0.0).to_numpy()
    picked = rng.choice(len(reference), size=min(len(reference), max_rows),
                        p=weights / weights.sum())
    return reference.iloc[np.sort(picked)].reset_index(drop=True)


def _sample(frame: pd.DataFrame, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    picked = rng.choice(len(frame), size=max_rows, replace=False)
    return frame.iloc[np.sort(picked)].reset_index(drop=True)


def _evidently_thresholds(reference: pd.DataFrame, matched: pd.DataFrame,
                          metrics: tuple[str, ...], threshold: float) -> dict[str, float]:
    """`threshold` whole-reference stds, expressed in the matched reference's stds (Evidently
    divides the distance by np.std of the reference it gets, at least 0.001)."""
    whole = reference[list(metrics)].std(ddof=0).clip(lower=1e-3)
    part = matched[list(metrics)].std(ddof=0).clip(lower=1e-3)
    return {m: float(threshold * whole[m] / part[m]) for m in metrics}


def _table(snapshot: Snapshot, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Method, value and threshold of each ValueDrift metric; drifted = its test failed."""
    result = snapshot.dict()
    failed = {t["metric_config"]["metric_id"]: _status(t["status"]) == "FAIL"
              for t in result["tests"] if t["metric_config"]["params"].get("column")}
    rows = {m["config"]["column"]: {
        "metric": m["config"]["column"], "method": m["config"]["method"],
        "statistic": float(m["value"]), "threshold": float(m["config"]["threshold"]),
        "drifted": failed[m["id"]],
    } for m in result["metrics"] if m["config"]["type"].endswith(":ValueDrift")}
    missing = set(metrics) - set(rows)
    if missing:
        raise RuntimeError(f"Evidently returned no drift result for {sorted(missing)}")
    return pd.DataFrame([rows[m] for m in metrics])


def _status(status: object) -> str:
    return str(getattr(status, "value", status))


def excluded_windows(windows: pd.DataFrame, grain: pd.Timedelta = GRAIN) -> pd.DataFrame:
    """The device-windows (device_id, window_start) that intervals (device_id, start_ts, end_ts)
    touch. Intervals count as closed, so a window touching either end is excluded too (errs
    towards a cleaner reference)."""
    windows = windows.dropna(subset=["device_id"])
    step_ns = grain.value
    first = _ns(windows["start_ts"]) // step_ns
    last = np.maximum(_ns(windows["end_ts"]) // step_ns, first)
    count = last - first + 1
    owner = np.repeat(np.arange(len(windows)), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return pd.DataFrame({
        "device_id": windows["device_id"].to_numpy().astype(np.int64)[owner],
        "window_start": pd.to_datetime((first[owner] + offset) * step_ns, utc=True),
    }).drop_duplicates()


def exclude_windows(frame: pd.DataFrame, windows: pd.DataFrame,
                    grain: pd.Timedelta = GRAIN) -> pd.DataFrame:
    """`frame` without the device-windows that any interval in `windows` touches (labeled
    anomalies and device alerts: anomalies must not define what normal looks like)."""
    if windows.empty or frame.empty:
        return frame
    bad = excluded_windows(windows, grain)
    keys = pd.MultiIndex.from_arrays([frame["device_id"].to_numpy().astype(np.int64),
                                      _ns(frame["window_start"])])
    bad_keys = pd.MultiIndex.from_arrays([bad["device_id"].to_numpy(), _ns(bad["window_start"])])
    return frame[~keys.isin(bad_keys)]


def _ns(values: pd.Series) -> np.ndarray:
    """UTC nanoseconds since the epoch (whatever the input's unit or time zone)."""
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns").asi8
