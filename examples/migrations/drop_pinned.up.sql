-- Contract step gone wrong: drops a column that still holds data, and narrows a type.
ALTER TABLE "Notes" DROP COLUMN "IsPinned";
ALTER TABLE "Projects" ALTER COLUMN "Budget" TYPE numeric(12, 0);
