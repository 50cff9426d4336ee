-- The bot's own memory: jobs, the audit log, and claims on scheduled runs.
CREATE TABLE dbops.jobs (
    id            bigserial PRIMARY KEY,
    target        text NOT NULL,
    kind          text NOT NULL,            -- the lock family: backup, drill, indexes, migrate, ...
    command       text NOT NULL,            -- the full subcommand, e.g. "backup verify b042"
    requested_by  text NOT NULL,            -- Slack user id, or "cli:<user>", or "scheduler"
    channel       text,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    owner         text,                     -- host:pid of the process running it
    message_ts    text,                     -- the channel message updated with progress
    phase         text,
    summary       text,
    result        jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX jobs_running ON dbops.jobs (target, kind) WHERE status IN ('queued', 'running');

CREATE TABLE dbops.audit_log (
    id            bigserial PRIMARY KEY,
    at            timestamptz NOT NULL DEFAULT now(),
    actor         text NOT NULL,
    channel       text,
    action        text NOT NULL,            -- "command", "approve", "reject", "refused", ...
    subcommand    text,
    target        text,
    outcome       text NOT NULL,
    duration_ms   integer,
    detail        text
);
CREATE INDEX audit_log_at ON dbops.audit_log (at DESC);

-- One row per scheduled run: the replica whose INSERT wins runs it.
CREATE TABLE dbops.schedule_claims (
    schedule      text NOT NULL,
    slot          text NOT NULL,            -- e.g. the date for a daily run
    claimed_by    text NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, slot)
);
