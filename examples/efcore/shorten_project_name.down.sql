START TRANSACTION;
ALTER TABLE "Projects" ALTER COLUMN "Name" TYPE character varying(200);

DELETE FROM "__EFMigrationsHistory"
WHERE "MigrationId" = '20261203101500_ShortenProjectName';

COMMIT;

