"""Quality and drift: Great Expectations results, batch quality marks, drift results, and
fleet-level data alerts (an alert with no device: a whole batch or window failed a check).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- The batch's data-quality verdict: the worst severity among its failed expectations.
ALTER TABLE telemetry.batches
    ADD COLUMN quality text CHECK (quality IN ('passed', 'warning', 'error')),
    ADD COLUMN quality_checked_at timestamptz;

-- One row per expectation per validated target (a raw batch, a KPI window, a scored window).
-- Re-validating the same target replaces its rows, so re-running a flow changes nothing.
CREATE TABLE telemetry.quality_results (
    result_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    suite              text NOT NULL,          -- raw_batch | kpi | scores
    target             text NOT NULL,          -- 'batch 17', 'fct_kpi_5m [start, end)', ...
    batch_id           bigint REFERENCES telemetry.batches (batch_id),
    window_start       timestamptz,
    window_end         timestamptz,
    expectation        text NOT NULL,          -- a readable name, unique within the suite
    expectation_type   text NOT NULL,          -- the GX expectation type
    column_name        text,
    severity           text NOT NULL CHECK (severity IN ('warning', 'error')),
    success            boolean NOT NULL,
    element_count      bigint,
    unexpected_count   bigint,
    unexpected_percent double precision,
    unexpected_sample  jsonb NOT NULL DEFAULT '[]'::jsonb,  -- keys and values of offending rows
    observed           jsonb,
    kwargs             jsonb NOT NULL DEFAULT '{}'::jsonb,  -- the expectation's parameters
    run_id             text NOT NULL,
    seconds            double precision,
    validated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (suite, target, expectation)
);
CREATE INDEX quality_results_time_idx ON telemetry.quality_results (validated_at);
CREATE INDEX quality_results_window_idx ON telemetry.quality_results (suite, window_start);
CREATE INDEX quality_results_failed_idx ON telemetry.quality_results (suite, expectation)
    WHERE NOT success;

-- Per metric (and site, or 'all') drift of a current period against a reference period.
-- Re-running the same period replaces its rows.
CREATE TABLE telemetry.drift_results (
    drift_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id           text NOT NULL,
    reference_start  timestamptz NOT NULL,
    reference_end    timestamptz NOT NULL,
    current_start    timestamptz NOT NULL,
    current_end      timestamptz NOT NULL,
    site             text NOT NULL DEFAULT 'all',
    metric           text NOT NULL,
    method           text NOT NULL,            -- Evidently's test: a p-value or a distance
    statistic        double precision,
    threshold        double precision,
    drifted          boolean NOT NULL,
    reference_rows   integer NOT NULL,
    current_rows     integer NOT NULL,
    reference_mean   double precision,
    current_mean     double precision,
    report_path      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (current_start, current_end, site, metric),
    CHECK (reference_start < reference_end AND current_start < current_end)
);
CREATE INDEX drift_results_metric_idx ON telemetry.drift_results (metric, site, current_end);

-- Quality alerts about a whole batch or window have no device.
ALTER TABLE telemetry.alerts ALTER COLUMN device_id DROP NOT NULL;
DROP INDEX telemetry.alerts_one_open_idx;
CREATE UNIQUE INDEX alerts_one_open_idx ON telemetry.alerts (kind, device_id, metric)
    NULLS NOT DISTINCT WHERE state IN ('pending', 'firing');
"""

DOWNGRADE = r"""
DELETE FROM telemetry.alert_states s USING telemetry.alerts a
    WHERE s.alert_id = a.alert_id AND a.device_id IS NULL;
DELETE FROM telemetry.alerts WHERE device_id IS NULL;
DROP INDEX telemetry.alerts_one_open_idx;
CREATE UNIQUE INDEX alerts_one_open_idx ON telemetry.alerts (kind, device_id, metric)
    WHERE state IN ('pending', 'firing');
ALTER TABLE telemetry.alerts ALTER COLUMN device_id SET NOT NULL;
DROP TABLE IF EXISTS telemetry.drift_results, telemetry.quality_results;
ALTER TABLE telemetry.batches DROP COLUMN quality, DROP COLUMN quality_checked_at;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
