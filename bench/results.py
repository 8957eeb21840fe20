"""Benchmark results: one row per stage beside its raw reference, the table, the JSON file and
the comparison with an earlier run."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass
class StageResult:
    """A stage's figure and, measured in the same run, the raw reference it is judged against.

    `rows` is the stage's unit of work (readings, points, vectors, requests); `goal` says the
    target in words and `met` whether this run reached it (None: no goal, a figure to state)."""

    stage: str
    rows: int
    seconds: float
    reference: str = ""
    reference_seconds: float | None = None
    reference_rows: int | None = None
    goal: str = ""
    met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    @property
    def reference_rate(self) -> float | None:
        if self.reference_seconds is None or self.reference_seconds <= 0:
            return None
        return (self.reference_rows or self.rows) / self.reference_seconds

    @property
    def ratio(self) -> float | None:
        ref = self.reference_rate
        return self.rate / ref if ref else None

    def judge(self, check: Callable[[StageResult], bool]) -> StageResult:
        self.met = bool(check(self))
        return self

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(rate=round(self.rate, 1), reference_rate=_round(self.reference_rate),
                   ratio=_round(self.ratio, 3))
        return out


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), "")
    # Other work on the machine shows in the figures: the load average says how much there was.
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def human(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.2f}{suffix}"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2f}"


def table(results: list[StageResult]) -> str:
    head = (f"{'stage':<44} {'rows':>8} {'seconds':>8} {'rows/s':>8} {'ref rows/s':>10}"
            f" {'ratio':>6}  goal")
    lines = [head, "-" * len(head)]
    for r in results:
        verdict = {True: "met", False: "MISSED", None: ""}[r.met]
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        lines.append(f"{r.stage:<44} {human(r.rows):>8} {r.seconds:>8.3f} {human(r.rate):>8}"
                     f" {human(r.reference_rate):>10} {ratio:>6}  {r.goal} {verdict}".rstrip())
    return "\n".join(lines)


def references(results: list[StageResult]) -> str:
    return "\n".join(f"  {r.stage}: {r.reference}" for r in results if r.reference)


def write(results: list[StageResult], meta: dict[str, Any],
          directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps({**meta, "stages": [r.to_json() for r in results]}, indent=1,
                               default=str))
    return path


def compare(results: list[StageResult], earlier: dict[str, Any]) -> str:
    """Rate change per stage against an earlier result file (matched by stage name)."""
    before = {s["stage"]: s for s in earlier.get("stages", [])}
    lines = [f"against {earlier.get('at', '?')} ({earlier.get('rows_requested', '?')} rows):",
             f"  {'stage':<44} {'rows/s then':>11} {'now':>8} {'change':>8}"]
    for r in results:
        old = before.get(r.stage)
        if not old or not old.get("rate"):
            lines.append(f"  {r.stage:<44} {'new':>11}")
            continue
        change = (r.rate / old["rate"] - 1) * 100
        lines.append(f"  {r.stage:<44} {human(old['rate']):>11} {human(r.rate):>8}"
                     f" {change:>+7.1f}%")
    return "\n".join(lines)
