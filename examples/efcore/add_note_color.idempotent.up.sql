START TRANSACTION;
DO $EF$
BEGIN
    IF NOT EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261201090000_AddNoteColor') THEN
    ALTER TABLE "Notes" ADD "Color" character varying(16);
    END IF;
END $EF$;

DO $EF$
BEGIN
    IF NOT EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261201090000_AddNoteColor') THEN
    CREATE INDEX "IX_Notes_Color" ON "Notes" ("Color");
    END IF;
END $EF$;

DO $EF$
BEGIN
    IF NOT EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261201090000_AddNoteColor') THEN
    INSERT INTO "__EFMigrationsHistory" ("MigrationId", "ProductVersion")
    VALUES ('20261201090000_AddNoteColor', '9.0.4');
    END IF;
END $EF$;
COMMIT;

