-- Restore drills: one row per drill run, with its whole result (steps, checks, versions) as JSON.
CREATE TABLE dbops.drills (
    id                    bigserial PRIMARY KEY,          -- shown as d001, d002, ...
    target                text NOT NULL,
    backup_id             text NOT NULL,
    requested_by          text NOT NULL,                  -- Slack user id, "cli:<user>" or "scheduler"
    started_at            timestamptz NOT NULL,
    finished_at           timestamptz NOT NULL,
    outcome               text NOT NULL CHECK (outcome IN ('passed', 'failed', 'cancelled')),
    passed                boolean NOT NULL GENERATED ALWAYS AS (outcome = 'passed') STORED,
    instance_kind         text NOT NULL,
    recovery_point_age_s  double precision,               -- the backup's age when restored
    total_s               double precision NOT NULL,      -- the recovery time
    summary               text NOT NULL,
    result                jsonb NOT NULL                  -- DrillResult.to_dict(): steps, checks, versions, procedure
);
CREATE INDEX drills_target_started ON dbops.drills (target, started_at DESC);
CREATE INDEX drills_target_passed ON dbops.drills (target, finished_at DESC) WHERE passed;
