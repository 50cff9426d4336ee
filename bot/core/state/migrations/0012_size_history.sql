-- The size plan's history: one row per target and day (UTC), written by the daily size sample. The
-- database's size; Render's disk usage and the plan's disk, where its API has them; how long that
-- day's newest backup and drill took; the local disk that drill copies go to. `status`, the digest
-- and `size` project from it when the backup window, the local disk and Render's disk run out.
CREATE TABLE dbops.size_history (
    target                  text NOT NULL,
    day                     date NOT NULL,
    recorded_at             timestamptz NOT NULL DEFAULT now(),
    database_bytes          bigint NOT NULL,        -- pg_database_size
    render_disk_used_bytes  bigint,                 -- Render's disk-usage metric
    render_disk_bytes       bigint,                 -- the instance's disk (diskSizeGB)
    render_disk_autoscaling boolean,
    backup_s                double precision,       -- the day's newest completed backup
    backup_bytes            bigint,                 -- its archive
    drill_s                 double precision,       -- the day's newest drill, start to instance gone
    local_disk_bytes        bigint,                 -- the disk drill copies are restored to
    local_free_bytes        bigint,
    PRIMARY KEY (target, day)
);
