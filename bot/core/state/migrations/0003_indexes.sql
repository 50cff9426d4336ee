-- Index review memory: daily snapshots of pg_stat_user_indexes, first-seen times, and the digest.
--
-- PostgreSQL keeps only a cumulative idx_scan per index, zeroed by statistics
-- resets, and records no creation time. One snapshot a day lets the review
-- count scans within a window (sums of day-to-day differences, across resets),
-- and the first time an index (OID + name) appears tells its age.

-- One row per target and day: when the snapshot was taken and the database's stats_reset then.
CREATE TABLE dbops.index_snapshot_days (
    target        text NOT NULL,
    day           date NOT NULL,
    taken_at      timestamptz NOT NULL,
    stats_reset   timestamptz,
    PRIMARY KEY (target, day)
);

CREATE TABLE dbops.index_snapshots (
    target        text NOT NULL,
    day           date NOT NULL,
    index_oid     bigint NOT NULL,
    schema_name   text NOT NULL,
    index_name    text NOT NULL,
    table_name    text NOT NULL,
    idx_scan      bigint NOT NULL,
    PRIMARY KEY (target, day, index_oid, schema_name, index_name),
    FOREIGN KEY (target, day) REFERENCES dbops.index_snapshot_days (target, day) ON DELETE CASCADE
);

-- PostgreSQL has no index creation time: the first snapshot that saw an index stands in for it.
CREATE TABLE dbops.index_first_seen (
    target        text NOT NULL,
    index_oid     bigint NOT NULL,
    schema_name   text NOT NULL,
    index_name    text NOT NULL,
    first_seen    timestamptz NOT NULL,
    PRIMARY KEY (target, index_oid, schema_name, index_name)
);

-- What each digest found, to tell the next one what changed.
CREATE TABLE dbops.digest_states (
    id            bigserial PRIMARY KEY,
    target        text NOT NULL,
    created_at    timestamptz NOT NULL,
    problems      integer NOT NULL,
    state         jsonb NOT NULL
);
CREATE INDEX digest_states_target_created ON dbops.digest_states (target, created_at DESC);

-- One row per target and day: the replica whose INSERT wins posts that day's digest.
CREATE TABLE dbops.digest_claims (
    target        text NOT NULL,
    day           date NOT NULL,
    claimed_by    text NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, day)
);
