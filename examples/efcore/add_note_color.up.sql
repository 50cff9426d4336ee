START TRANSACTION;
ALTER TABLE "Notes" ADD "Color" character varying(16);

CREATE INDEX "IX_Notes_Color" ON "Notes" ("Color");

INSERT INTO "__EFMigrationsHistory" ("MigrationId", "ProductVersion")
VALUES ('20261201090000_AddNoteColor', '9.0.4');

COMMIT;

