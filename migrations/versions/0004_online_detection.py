"""Online detection (POST /api/v1/detect): the persisted state of each scored series and the
anomalies it found.

Online anomalies get their own table rather than telemetry.scores (detector 'online_z'):
the score flow replaces *every* detector's scores of a re-scored window for its devices, which
would silently delete online results; a series key is free text (not only device + metric);
and training excludes anomalous scores, which ad-hoc callers should not be able to steer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- One row per series: its parameters and the last `window_size` values (oldest first), enough
-- to score the next point exactly as if the whole series had been sent at once.
CREATE TABLE telemetry.online_series (
    series       text PRIMARY KEY CHECK (length(series) BETWEEN 1 AND 200),
    device_id    integer,                  -- optional links to the registry, for joins
    metric       text,
    window_size  integer NOT NULL CHECK (window_size >= 2),
    min_periods  integer NOT NULL CHECK (min_periods >= 2 AND min_periods <= window_size),
    recent       double precision[] NOT NULL DEFAULT '{}',
    last_ts      timestamptz,
    n_seen       bigint NOT NULL DEFAULT 0,
    n_anomalies  bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (cardinality(recent) <= window_size)
);
CREATE INDEX online_series_device_idx ON telemetry.online_series (device_id, metric);

CREATE TABLE telemetry.online_anomalies (
    series       text NOT NULL REFERENCES telemetry.online_series (series) ON DELETE CASCADE,
    ts           timestamptz NOT NULL,
    value        double precision NOT NULL,
    mean         double precision NOT NULL,
    std_dev      double precision NOT NULL,  -- the scale z was divided by (floored sample std)
    z            double precision NOT NULL,
    k            double precision NOT NULL,
    window_size  integer NOT NULL,
    detected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (series, ts)
);
CREATE INDEX online_anomalies_ts_idx ON telemetry.online_anomalies (ts);
"""

DOWNGRADE = "DROP TABLE IF EXISTS telemetry.online_anomalies, telemetry.online_series;"


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
