-- Requests that need an approver's reaction before they run, and the votes on them.
CREATE TABLE dbops.approval_requests (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL,                 -- "migration"
    name             text NOT NULL,
    target           text NOT NULL,
    sha256           text NOT NULL,                 -- of the SQL (UP, then DOWN) as submitted
    payload          jsonb NOT NULL,                -- what runs on approval (e.g. UP and DOWN SQL)
    analysis         jsonb NOT NULL DEFAULT '{}',   -- findings and checklist shown in the request
    requires_approval boolean NOT NULL,
    required_approvals integer NOT NULL DEFAULT 1,
    requested_by     text NOT NULL,
    attested_by      text,                          -- who said "tested on staging"
    channel          text,
    message_ts       text,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'approved', 'applying', 'applied', 'rejected', 'expired', 'failed')),
    status_detail    text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    decided_at       timestamptz,
    applied_at       timestamptz
);
CREATE UNIQUE INDEX approval_requests_message ON dbops.approval_requests (channel, message_ts);
CREATE INDEX approval_requests_sha ON dbops.approval_requests (sha256);

CREATE TABLE dbops.approval_votes (
    request_id   bigint NOT NULL REFERENCES dbops.approval_requests (id),
    voter        text NOT NULL,
    vote         text NOT NULL CHECK (vote IN ('approve', 'reject')),
    at           timestamptz NOT NULL DEFAULT now(),
    withdrawn_at timestamptz,
    PRIMARY KEY (request_id, voter, vote)
);

-- Slack retries deliveries; an event id seen once is never acted on again.
CREATE TABLE dbops.slack_events (
    event_id    text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Migrations applied through the bot: the ledger.
CREATE TABLE dbops.migration_ledger (
    id           bigserial PRIMARY KEY,
    request_id   bigint REFERENCES dbops.approval_requests (id),
    name         text NOT NULL,
    target       text NOT NULL,
    sha256       text NOT NULL,
    approvers    text[] NOT NULL DEFAULT '{}',
    backup_id    text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    duration_ms  integer,
    result       text NOT NULL,
    detail       text
);
