START TRANSACTION;
ALTER TABLE "Notes" DROP COLUMN "Content";

INSERT INTO "__EFMigrationsHistory" ("MigrationId", "ProductVersion")
VALUES ('20261202120001_DropNoteContent', '9.0.4');

COMMIT;

