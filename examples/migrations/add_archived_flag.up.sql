-- Expand step of an expand/contract change: a nullable column, no default, no rewrite.
SET lock_timeout = '5s';
ALTER TABLE "Notes" ADD COLUMN "ArchivedAt" timestamp with time zone;
CREATE INDEX CONCURRENTLY "IX_Notes_ArchivedAt" ON "Notes" ("ArchivedAt");
