-- An encrypted backup checked by a process without DBOPS_BACKUP_KEY: its SHA-256 was checked, its
-- content could not be. "no_key" says so; it is not "unrestorable", and retention never counts it
-- against the backup.
ALTER TABLE dbops.backups DROP CONSTRAINT backups_verify_status_check;
ALTER TABLE dbops.backups ADD CONSTRAINT backups_verify_status_check
    CHECK (verify_status IN ('pending', 'verified', 'failed', 'unrestorable', 'no_key'));
