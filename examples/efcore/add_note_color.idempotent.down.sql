START TRANSACTION;
DO $EF$
BEGIN
    IF EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261201090000_AddNoteColor') THEN
    DROP INDEX "IX_Notes_Color";
    END IF;
END $EF$;

DO $EF$
BEGIN
    IF EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261201090000_AddNoteColor') THEN
    ALTER TABLE "Notes" DROP COLUMN "Color";
    END IF;
END $EF$;

DO $EF$
BEGIN
    IF EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261201090000_AddNoteColor') THEN
    DELETE FROM "__EFMigrationsHistory"
    WHERE "MigrationId" = '20261201090000_AddNoteColor';
    END IF;
END $EF$;
COMMIT;

