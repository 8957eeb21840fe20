"""Put a rendered page in the reports directory: atomic write, catalog entry, fresh index."""

from __future__ import annotations

from pathlib import Path

from reports import catalog, index
from reports.render import PageMeta, write_atomic


def publish(reports_dir: Path, meta: PageMeta, html: str, summary: str) -> Path:
    """Write `html` as meta.filename, record it in the catalog, rebuild index.html."""
    path = reports_dir / meta.filename
    write_atomic(path, html)
    catalog.record(reports_dir, catalog.ReportEntry(
        name=meta.name, title=meta.title, path=Path(meta.filename).as_posix(),
        generated_at=meta.generated_at.isoformat(timespec="seconds"),
        range_start=None if meta.start is None else meta.start.isoformat(),
        range_end=None if meta.end is None else meta.end.isoformat(),
        run_id=meta.run_id, summary=summary))
    index.write_index_report(reports_dir, run_id=meta.run_id)
    return path
