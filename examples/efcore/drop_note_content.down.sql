START TRANSACTION;
ALTER TABLE "Notes" ADD "Content" text NOT NULL DEFAULT '';

DELETE FROM "__EFMigrationsHistory"
WHERE "MigrationId" = '20261202120001_DropNoteContent';

COMMIT;

