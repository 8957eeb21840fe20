"""Prefect artifacts: a markdown summary per flow run with its key figures and where to look
next (report files), so the Prefect UI shows what a run did without reading logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact


def table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def report_links(paths: dict[str, Path]) -> str:
    if not paths:
        return ""
    items = [f"- {name}: [{p.name}]({p.resolve().as_uri()}) (`{p}`)" for name, p in paths.items()]
    return "\n\n**Reports**\n\n" + "\n".join(items)


def publish(key: str, title: str, rows: list[tuple[str, Any]],
            reports: dict[str, Path] | None = None, description: str = "") -> None:
    """One markdown artifact; a failure to publish is logged, never fails the run."""
    markdown = f"## {title}\n\n{table(rows)}{report_links(reports or {})}\n"
    try:
        create_markdown_artifact(key=key, markdown=markdown, description=description or title)
    except Exception as exc:  # the data work is done; a missing artifact must not undo it
        get_run_logger().warning("could not publish the %s artifact: %s", key, exc)
