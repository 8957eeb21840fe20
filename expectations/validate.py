"""Run a suite on a DataFrame and turn GX's results into plain, JSON-safe outcomes.

One ephemeral GX context per process (no files, no progress bars, no network). A suite's run
never raises for bad data: an expectation that errors (a missing column, say) is a failed
outcome carrying GX's message.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import great_expectations as gx
import great_expectations.data_context.types.base as gx_base
import numpy as np
import pandas as pd
from great_expectations.data_context.types.base import ProgressBarsConfig

from expectations.suites import ERROR

SAMPLE_SIZE = 20  # offending rows kept per expectation (keys and value)


@dataclass
class Outcome:
    expectation: str  # the readable name from the suite
    expectation_type: str
    column: str | None
    severity: str  # 'error' | 'warning'
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    sample: list[dict[str, Any]] = field(default_factory=list)
    observed: Any = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


@dataclass
class SuiteResult:
    suite: str
    outcomes: list[Outcome]
    seconds: float

    @property
    def status(self) -> str:
        """passed, or the worst severity among the failed expectations."""
        failed = {o.severity for o in self.outcomes if not o.success}
        return "error" if "error" in failed else "warning" if failed else "passed"

    def failed(self, severity: str | None = None) -> list[Outcome]:
        return [o for o in self.outcomes
                if not o.success and (severity is None or o.severity == severity)]


@lru_cache(maxsize=1)
def _batch_definition() -> Any:
    # GX pins this module's logger to INFO, then announces the ephemeral context's temporary
    # docs directory on it: noise in every flow log.
    gx_base.logger.setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("frames").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole")


def jsonable(value: Any) -> Any:
    """numpy/pandas scalars and timestamps as JSON values; NaN and NaT as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _exception_message(info: dict[str, Any]) -> str | None:
    """GX reports an expectation's error flat, or nested per metric it could not compute."""
    if "exception_message" in info:
        return info["exception_message"] if info.get("raised_exception") else None
    nested = [_exception_message(v) for v in info.values() if isinstance(v, dict)]
    return next((m for m in nested if m), None)


def _outcome(result: Any) -> Outcome:
    config = result.expectation_config
    body = result.result or {}
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
    sample = body.get("unexpected_index_list") or [
        {"value": v} for v in body.get("partial_unexpected_list") or []]
    error = _exception_message(result.exception_info or {})
    return Outcome(
        expectation=(config.meta or {}).get("name", config.type),
        expectation_type=config.type,
        column=kwargs.get("column"),
        severity="error" if config.severity == ERROR else "warning",
        success=bool(result.success) and not error,
        element_count=body.get("element_count"),
        unexpected_count=body.get("unexpected_count"),
        unexpected_percent=body.get("unexpected_percent"),
        sample=jsonable(list(sample)[:SAMPLE_SIZE]),
        observed=jsonable(body.get("observed_value")),
        kwargs=jsonable(kwargs),
        message=error,
    )


def run_suite(frame: pd.DataFrame, suite: gx.ExpectationSuite,
              key_columns: list[str]) -> SuiteResult:
    """Validate `frame`; samples of offending rows carry `key_columns` so they can be found."""
    started = time.perf_counter()
    keys = [c for c in key_columns if c in frame.columns]
    try:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format={
            "result_format": "COMPLETE", "unexpected_index_column_names": keys,
            "partial_unexpected_count": SAMPLE_SIZE, "return_unexpected_index_query": False})
        outcomes = [_outcome(r) for r in result.results]
    except Exception as exc:  # GX itself failed: a visible failed result, not a crashed flow
        outcomes = [Outcome("suite_ran", "validation", None, "error", False, len(frame), None,
                            None, message=f"{type(exc).__name__}: {exc}")]
    return SuiteResult(suite.name, outcomes, round(time.perf_counter() - started, 3))
