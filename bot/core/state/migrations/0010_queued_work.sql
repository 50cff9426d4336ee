-- Slack commands acknowledged but still waiting for a worker. A row lives until its work starts or
-- its requester is told it will not run; the process holding it beats `beat_at`, so the row of a
-- process that was killed (SIGKILL, OOM) goes stale and its requester is told at the next start.
CREATE TABLE dbops.queued_work (
    id           bigserial PRIMARY KEY,
    command      text NOT NULL,
    requested_by text NOT NULL,
    channel      text,
    slack_user   text,
    queued_at    timestamptz NOT NULL DEFAULT now(),
    beat_at      timestamptz NOT NULL DEFAULT now()
);
