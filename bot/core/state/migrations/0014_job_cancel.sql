-- A running job can be asked to stop (`job cancel N`, `backup cancel`, `drill cancel`) from any
-- process: the one running it reads the request at its next heartbeat and stops at a safe point.
ALTER TABLE dbops.jobs
    ADD COLUMN cancel_requested_by text,
    ADD COLUMN cancel_requested_at timestamptz;

-- A backup stopped on request is `cancelled`, not `failed`: nothing went wrong with the database.
ALTER TABLE dbops.backups DROP CONSTRAINT backups_status_check;
ALTER TABLE dbops.backups ADD CONSTRAINT backups_status_check
    CHECK (status IN ('running', 'completed', 'failed', 'cancelled'));
