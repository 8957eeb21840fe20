"""Detection: model registry, scores, alerts (with their machine state), evaluations.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- Fitted detectors. State is JSON (never pickle): arrays as lists, tables as records.
CREATE TABLE telemetry.models (
    model_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    detector     text NOT NULL,
    version      integer NOT NULL,
    params       jsonb NOT NULL,
    train_start  timestamptz NOT NULL,
    train_end    timestamptz NOT NULL,
    row_count    bigint NOT NULL,
    state        jsonb NOT NULL,
    metrics      jsonb NOT NULL DEFAULT '{}'::jsonb,
    reason       text NOT NULL DEFAULT 'scheduled',
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (detector, version),
    CHECK (train_start < train_end)
);

-- Scored points worth keeping: every point at or above the record floor (a fraction of the
-- detector's threshold), so anomalies and near misses are queryable without storing millions
-- of unremarkable scores a day. Re-scoring a window replaces that window's rows.
CREATE TABLE telemetry.scores (
    detector       text NOT NULL,
    device_id      integer NOT NULL,
    metric         text NOT NULL,            -- a metric name, or 'multi'
    ts             timestamptz NOT NULL,
    model_id       bigint REFERENCES telemetry.models (model_id),
    value          double precision,
    baseline_mean  double precision,
    baseline_std   double precision,
    score          double precision NOT NULL, -- normalized: 1.0 = the detector's threshold
    is_anomaly     boolean NOT NULL,
    severity       text,
    reason         text,
    contributions  jsonb,
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (detector, device_id, metric, ts)
);
CREATE INDEX scores_ts_idx ON telemetry.scores (ts);
CREATE INDEX scores_anomaly_idx ON telemetry.scores (ts) WHERE is_anomaly;

-- The scoring watermark per detector set lives in telemetry.watermarks (stream 'score').

-- Alerts people see. At most one open alert per (kind, device, metric).
CREATE TABLE telemetry.alerts (
    alert_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('device', 'data')),
    device_id       integer NOT NULL,
    metric          text NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    severity        text NOT NULL DEFAULT 'low'
                    CHECK (severity IN ('low', 'medium', 'high', 'critical')),
    opened_at       timestamptz NOT NULL,
    fired_at        timestamptz,
    resolved_at     timestamptz,
    last_seen_at    timestamptz NOT NULL,
    peak_score      double precision,
    peak_ts         timestamptz,
    reason          text,
    detectors       text[] NOT NULL DEFAULT '{}',
    contributions   jsonb,
    acknowledged_at timestamptz,
    acknowledged_by text,
    ack_note        text,
    resolved_by     text,
    resolve_note    text,
    drifted         boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alerts_one_open_idx ON telemetry.alerts (kind, device_id, metric)
    WHERE state IN ('pending', 'firing');
CREATE INDEX alerts_state_idx ON telemetry.alerts (state, severity);
CREATE INDEX alerts_device_idx ON telemetry.alerts (device_id, opened_at);

CREATE FUNCTION telemetry.greatest_severity(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE WHEN array_position(ARRAY['low', 'medium', 'high', 'critical'], b)
                   > coalesce(array_position(ARRAY['low', 'medium', 'high', 'critical'], a), 0)
                THEN b ELSE a END
$fn$;

-- The alert machine's memory per key (pending/firing/cooldown), so a micro-batch continues
-- exactly where the last one stopped.
CREATE TABLE telemetry.alert_states (
    kind       text NOT NULL,
    device_id  integer NOT NULL,
    metric     text NOT NULL,
    state      jsonb NOT NULL,
    alert_id   bigint REFERENCES telemetry.alerts (alert_id),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, device_id, metric)
);

-- Backtests against the simulator's labels.
CREATE TABLE telemetry.evaluations (
    evaluation_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id         text NOT NULL,
    detector       text NOT NULL,
    anomaly_type   text NOT NULL,            -- or 'all'
    seed           bigint NOT NULL,
    days           double precision NOT NULL,
    devices        integer NOT NULL,
    events         integer NOT NULL,
    detected       integer NOT NULL,
    precision      double precision,
    recall         double precision,
    f1             double precision,
    false_alarms_per_device_day double precision,
    median_time_to_detect_s     double precision,
    pointwise      jsonb NOT NULL DEFAULT '{}'::jsonb,
    params         jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (run_id, detector, anomaly_type)
);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS telemetry.evaluations, telemetry.alert_states, telemetry.alerts,
    telemetry.scores, telemetry.models;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
