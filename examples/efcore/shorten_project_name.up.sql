START TRANSACTION;
ALTER TABLE "Projects" ALTER COLUMN "Name" TYPE character varying(100);

INSERT INTO "__EFMigrationsHistory" ("MigrationId", "ProductVersion")
VALUES ('20261203101500_ShortenProjectName', '9.0.4');

COMMIT;

