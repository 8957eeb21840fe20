"""Batch attempts in the ledger: a load records its attempt ('running', with its server
session) and commits that before any of its data, so a process killed mid-batch leaves a row
the next load marks failed ("interrupted"), and the ledger shows every try, not only those
that ended in Python.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE telemetry.batches DROP CONSTRAINT batches_status_check;
ALTER TABLE telemetry.batches
    ADD CONSTRAINT batches_status_check CHECK (status IN ('running', 'succeeded', 'failed'));
ALTER TABLE telemetry.batches ADD COLUMN backend_pid integer;  -- the loading session, while running
-- Each load looks for attempts whose session has gone: keep that look cheap.
CREATE INDEX batches_running_idx ON telemetry.batches (batch_id) WHERE status = 'running';
"""

DOWNGRADE = r"""
DROP INDEX telemetry.batches_running_idx;
UPDATE telemetry.batches SET status = 'failed', error = coalesce(error, 'interrupted')
 WHERE status = 'running';
ALTER TABLE telemetry.batches DROP COLUMN backend_pid;
ALTER TABLE telemetry.batches DROP CONSTRAINT batches_status_check;
ALTER TABLE telemetry.batches
    ADD CONSTRAINT batches_status_check CHECK (status IN ('succeeded', 'failed'));
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
