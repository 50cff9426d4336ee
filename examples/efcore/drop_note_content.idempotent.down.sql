START TRANSACTION;
DO $EF$
BEGIN
    IF EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261202120001_DropNoteContent') THEN
    ALTER TABLE "Notes" ADD "Content" text NOT NULL DEFAULT '';
    END IF;
END $EF$;

DO $EF$
BEGIN
    IF EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261202120001_DropNoteContent') THEN
    DELETE FROM "__EFMigrationsHistory"
    WHERE "MigrationId" = '20261202120001_DropNoteContent';
    END IF;
END $EF$;
COMMIT;

