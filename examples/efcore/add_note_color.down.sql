START TRANSACTION;
DROP INDEX "IX_Notes_Color";

ALTER TABLE "Notes" DROP COLUMN "Color";

DELETE FROM "__EFMigrationsHistory"
WHERE "MigrationId" = '20261201090000_AddNoteColor';

COMMIT;

