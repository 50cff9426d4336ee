-- A job is alive while its process holds the job lock or has beaten its heart recently: the lock's
-- connection can die (idle_session_timeout, a failover, a proxy cut) while the job still runs, and
-- is then re-taken by the job's heartbeat.
ALTER TABLE dbops.jobs ADD COLUMN heartbeat_at timestamptz;
UPDATE dbops.jobs SET heartbeat_at = coalesce(finished_at, started_at, created_at);

-- A scheduled run that dies or fails gives its slot back for another try, up to a few attempts.
ALTER TABLE dbops.schedule_claims
    ADD COLUMN attempts    integer NOT NULL DEFAULT 1,
    ADD COLUMN finished_at timestamptz,
    ADD COLUMN outcome     text CHECK (outcome IN ('succeeded', 'failed')),
    ADD COLUMN detail      text;
UPDATE dbops.schedule_claims SET finished_at = claimed_at, outcome = 'succeeded';
