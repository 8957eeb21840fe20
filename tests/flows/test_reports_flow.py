"""The report flow writes every report and the index into the configured directory, and
publishes an artifact that links them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.settings import get_settings
from flows import pipeline
from flows.params import BackfillParams, FleetParams
from flows.reports import ReportParams, report

END = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.mark.usefixtures("prefect_harness")
def test_report_flow_writes_every_report_and_the_index(conn, tmp_path, monkeypatch):
    monkeypatch.setenv("TELEMETRY_REPORTS_DIR", str(tmp_path / "reports"))
    get_settings.cache_clear()
    pipeline.backfill(params=BackfillParams(days=2 / 24, end=END, chunk_minutes=60),
                      fleet=FleetParams(sites=1, zones_per_site=1, devices_per_zone=2))
    summary = report(ReportParams(hours=2))
    assert summary.reports_dir == tmp_path / "reports"
    assert set(summary.files) == {"alerts", "fleet", "quality", "evaluation", "drift"}
    index = summary.index.read_text()
    for path in summary.files.values():
        assert path.is_file() and path.parent == summary.reports_dir
        assert f'href="{path.name}"' in index
    quality = summary.files["quality"].read_text()
    assert "raw_batch" in quality  # the backfill's batches were validated

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:  # this process's server: newest is ours
        [published, *_] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["reports"])),
            sort=ArtifactSort.CREATED_DESC)
    assert "index.html" in published.data and "quality.html" in published.data
