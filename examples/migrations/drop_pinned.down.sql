ALTER TABLE "Notes" ADD COLUMN "IsPinned" boolean NOT NULL DEFAULT false;
ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(12, 2);
