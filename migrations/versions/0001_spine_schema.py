"""Spine schema: registry, partitioned readings, batch ledger, quarantine, labels, watermarks.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE SCHEMA IF NOT EXISTS telemetry;

-- Metric registry: units, normal band (simulator), physical limits (loader) and the alert
-- threshold (KPI breach counts). Expectations and detectors read their parameters from here.
CREATE TABLE telemetry.metrics (
    metric_id        smallint PRIMARY KEY,
    metric           text NOT NULL UNIQUE,
    unit             text NOT NULL,
    normal_min       double precision NOT NULL,
    normal_max       double precision NOT NULL,
    hard_min         double precision NOT NULL,
    hard_max         double precision NOT NULL,
    breach_threshold double precision,
    CHECK (hard_min <= normal_min AND normal_min < normal_max AND normal_max <= hard_max)
);
INSERT INTO telemetry.metrics VALUES
    (1, 'co2',         'ppm',   400, 800,   0, 10000, 1000),
    (2, 'temperature', 'degC',   18,  26, -40,    85,   30),
    (3, 'humidity',    'pct',    30,  60,   0,   100,   80),
    (4, 'occupancy',   'count',   0,  20,   0,  1000, NULL);

CREATE TABLE telemetry.devices (
    device_id        integer PRIMARY KEY,
    device_name      text NOT NULL UNIQUE,
    site             text NOT NULL,
    zone             text NOT NULL,
    device_kind      text NOT NULL,
    metrics          text[] NOT NULL,
    interval_seconds integer NOT NULL CHECK (interval_seconds > 0),
    installed_at     timestamptz NOT NULL,
    registered_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_site_zone_idx ON telemetry.devices (site, zone);

-- Readings: one row per device, metric and event time; daily range partitions plus a default
-- one, so retention drops whole days. No foreign keys: the loader validates before COPY
-- (per-row FK triggers would cost most of the load rate).
CREATE TABLE telemetry.readings (
    device_id   integer          NOT NULL,
    metric_id   smallint         NOT NULL,
    ts          timestamptz      NOT NULL,
    value       double precision NOT NULL,
    batch_id    bigint           NOT NULL,
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, metric_id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE telemetry.readings_default PARTITION OF telemetry.readings DEFAULT;

CREATE TABLE telemetry.batches (
    batch_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source            text NOT NULL CHECK (source IN ('simulator', 'api', 'csv', 'backfill')),
    stream            text NOT NULL,
    window_start      timestamptz,
    window_end        timestamptz,
    reference_time    timestamptz NOT NULL,
    rows_received     integer NOT NULL DEFAULT 0,
    rows_loaded       integer NOT NULL DEFAULT 0,
    rows_duplicate    integer NOT NULL DEFAULT 0,
    rows_quarantined  integer NOT NULL DEFAULT 0,
    status            text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    error             text,
    load_path         text,
    timings_ms        jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (window_start IS NULL OR window_end IS NULL OR window_start <= window_end)
);
CREATE INDEX batches_stream_window_idx ON telemetry.batches (stream, window_start);

-- Every rejected row, with its raw payload, the rule it broke and a reason a person can act
-- on. The fingerprint (rule + payload) makes re-running a batch add nothing.
CREATE TABLE telemetry.quarantine (
    quarantine_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id       bigint NOT NULL REFERENCES telemetry.batches (batch_id),
    rule           text NOT NULL,
    reason         text NOT NULL,
    device_id      integer,
    metric_id      smallint,
    ts             timestamptz,
    value          double precision,
    raw            jsonb NOT NULL,
    fingerprint    text NOT NULL UNIQUE,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX quarantine_rule_idx ON telemetry.quarantine (rule);
CREATE INDEX quarantine_batch_idx ON telemetry.quarantine (batch_id);

-- Ground truth from the simulator.
CREATE TABLE telemetry.anomaly_labels (
    label_id     text PRIMARY KEY,
    device_id    integer NOT NULL,
    metrics      text[] NOT NULL,
    anomaly_type text NOT NULL,
    start_ts     timestamptz NOT NULL,
    end_ts       timestamptz NOT NULL,
    magnitude    double precision NOT NULL,
    CHECK (start_ts < end_ts)
);
CREATE INDEX anomaly_labels_device_time_idx ON telemetry.anomaly_labels (device_id, start_ts);

CREATE TABLE telemetry.data_faults (
    fault_id   text PRIMARY KEY,
    fault_type text NOT NULL,
    device_id  integer NOT NULL,
    metric_id  smallint NOT NULL,
    ts         timestamptz NOT NULL,
    arrival_ts timestamptz NOT NULL,
    detail     text NOT NULL
);
CREATE INDEX data_faults_type_idx ON telemetry.data_faults (fault_type);

CREATE TABLE telemetry.watermarks (
    stream     text PRIMARY KEY,
    high_water timestamptz NOT NULL,
    batch_id   bigint REFERENCES telemetry.batches (batch_id),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Daily partitions for [first_day, last_day]. A day whose rows already sit in the default
-- partition is left there (attaching it would fail); ensure_partitions reports which days it made.
CREATE FUNCTION telemetry.ensure_partitions(first_day date, last_day date)
RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE
    d date;
    part text;
BEGIN
    FOR d IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        part := 'readings_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass('telemetry.' || part) IS NOT NULL;
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM telemetry.readings_default
            WHERE ts >= (d::timestamp AT TIME ZONE 'UTC')
              AND ts < ((d + 1)::timestamp AT TIME ZONE 'UTC')
        );
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS telemetry.%I PARTITION OF telemetry.readings '
            'FOR VALUES FROM (%L) TO (%L)',
            part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
        RETURN NEXT part;
    END LOOP;
END
$fn$;
"""

DOWNGRADE = "DROP SCHEMA IF EXISTS telemetry CASCADE;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
