"""The reports directory's catalog: which report files exist, what they cover, which run wrote
them. Every report writer records its file here; the index page is built from it.

The catalog is `manifest.json` in the reports directory, keyed by the file's relative path (a
rewritten file replaces its entry). Writers hold a lock file, so two flows finishing at once
do not lose each other's entries.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ReportEntry:
    name: str  # the report's kind: alerts, fleet, quality, evaluation, drift, drift-evidently
    title: str
    path: str  # relative to the reports directory, with forward slashes
    generated_at: str  # ISO 8601, UTC
    range_start: str | None = None
    range_end: str | None = None
    run_id: str | None = None
    summary: str = ""  # one line of key figures, shown on the index


def cli_run_id() -> str:
    """The run id of a report written outside a flow (flows pass `prefect:<flow run id>`)."""
    return "cli:" + datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


@contextmanager
def _locked(reports_dir: Path) -> Iterator[None]:
    reports_dir.mkdir(parents=True, exist_ok=True)
    with open(reports_dir / ".manifest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read(reports_dir: Path) -> dict[str, dict]:
    try:
        return json.loads((reports_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError:  # a torn file from a crashed writer: start over
        return {}


def record(reports_dir: Path, entry: ReportEntry) -> None:
    """Add or replace the entry for entry.path."""
    with _locked(reports_dir):
        entries = _read(reports_dir)
        entries[entry.path] = asdict(entry)
        tmp = reports_dir / f".{MANIFEST}.{os.getpid()}"
        tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
        tmp.replace(reports_dir / MANIFEST)


def entries(reports_dir: Path) -> list[ReportEntry]:
    """Recorded reports whose files still exist, newest first."""
    found = [ReportEntry(**e) for e in _read(reports_dir).values()
             if (reports_dir / e["path"]).is_file()]
    return sorted(found, key=lambda e: e.generated_at, reverse=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
