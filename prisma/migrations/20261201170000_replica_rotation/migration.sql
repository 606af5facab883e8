-- AlterTable
ALTER TABLE "Replica" ADD COLUMN "replacesId" TEXT;
