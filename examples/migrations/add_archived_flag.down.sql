SET lock_timeout = '5s';
DROP INDEX CONCURRENTLY "IX_Notes_ArchivedAt";
ALTER TABLE "Notes" DROP COLUMN "ArchivedAt";
