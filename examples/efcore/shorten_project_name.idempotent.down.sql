START TRANSACTION;
DO $EF$
BEGIN
    IF EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261203101500_ShortenProjectName') THEN
    ALTER TABLE "Projects" ALTER COLUMN "Name" TYPE character varying(200);
    END IF;
END $EF$;

DO $EF$
BEGIN
    IF EXISTS(SELECT 1 FROM "__EFMigrationsHistory" WHERE "MigrationId" = '20261203101500_ShortenProjectName') THEN
    DELETE FROM "__EFMigrationsHistory"
    WHERE "MigrationId" = '20261203101500_ShortenProjectName';
    END IF;
END $EF$;
COMMIT;

