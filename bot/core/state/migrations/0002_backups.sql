-- The backup catalog: one row per backup attempt. A row says `completed` only once the archive
-- is written, fsynced, checked and under its final name (or uploaded); `verified` only after a
-- full read of it. Ids are short and human: b042 (asked for), a017 (scheduled).
CREATE SEQUENCE dbops.backup_manual_seq;
CREATE SEQUENCE dbops.backup_scheduled_seq;

CREATE TABLE dbops.backups (
    id               text PRIMARY KEY,
    target           text NOT NULL,
    database         text,
    scheduled        boolean NOT NULL DEFAULT false,
    requested_by     text NOT NULL,
    status           text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    phase            text,
    error            text,                   -- why it failed, secret-free
    owner            text,                   -- host:pid of the process taking it
    heartbeat_at     timestamptz,            -- a running row without a heartbeat for long is dead
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    duration_s       double precision,
    format           text,
    compression      text,
    encrypted        boolean NOT NULL DEFAULT false,
    storage          text,                   -- local | s3
    location         text,                   -- file path, or s3://bucket/key
    size_bytes       bigint,
    sha256           text,
    integrity_level  text,
    tables           integer,
    total_rows       bigint,
    verify_status    text NOT NULL DEFAULT 'pending'
                     CHECK (verify_status IN ('pending', 'verified', 'failed', 'unrestorable')),
    verified_at      timestamptz,
    verify_detail    text,
    deleted_at       timestamptz,            -- pruned: the archive is gone, the row stays as history
    manifest         jsonb
);
CREATE INDEX backups_target_started ON dbops.backups (target, started_at DESC);
CREATE INDEX backups_running ON dbops.backups (status) WHERE status = 'running';
