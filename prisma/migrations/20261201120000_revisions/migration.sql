-- CreateEnum
CREATE TYPE "RevisionStatus" AS ENUM ('STAGED', 'SERVING', 'RETIRED', 'FAILED');

-- AlterTable
ALTER TABLE "Deployment" ADD COLUMN "revisionId" TEXT;

-- AlterTable
ALTER TABLE "Replica" ADD COLUMN "revisionId" TEXT;

-- AlterTable
ALTER TABLE "Operation" ADD COLUMN "warning" TEXT;

-- CreateTable
CREATE TABLE "Revision" (
    "id" TEXT NOT NULL,
    "deploymentId" TEXT NOT NULL,
    "variantId" TEXT NOT NULL,
    "gpu" TEXT NOT NULL,
    "status" "RevisionStatus" NOT NULL,
    "operationId" TEXT NOT NULL,
    "reason" TEXT,
    "replicaCount" INTEGER,
    "previousRevisionId" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "servedFrom" TIMESTAMP(3),
    "servedTo" TIMESTAMP(3),

    CONSTRAINT "Revision_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Revision_operationId_key" ON "Revision"("operationId");

-- CreateIndex
CREATE INDEX "Revision_deploymentId_createdAt_idx" ON "Revision"("deploymentId", "createdAt");

-- CreateIndex
CREATE UNIQUE INDEX "Deployment_revisionId_key" ON "Deployment"("revisionId");

-- AddForeignKey
ALTER TABLE "Revision" ADD CONSTRAINT "Revision_deploymentId_fkey" FOREIGN KEY ("deploymentId") REFERENCES "Deployment"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Revision" ADD CONSTRAINT "Revision_variantId_fkey" FOREIGN KEY ("variantId") REFERENCES "Variant"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Replica" ADD CONSTRAINT "Replica_revisionId_fkey" FOREIGN KEY ("revisionId") REFERENCES "Revision"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- Backfill (data, not schema): every existing deployment gets its first revision, made by its deploy
-- operation and serving it; its replicas belong to it. One that has not served yet has no servedFrom.
INSERT INTO "Revision" ("id", "deploymentId", "variantId", "gpu", "status", "operationId", "createdAt", "servedFrom")
SELECT 'rev_' || o."id", d."id", d."variantId", d."gpu", 'SERVING', o."id", d."createdAt",
       CASE WHEN d."status" IN ('PENDING', 'PROVISIONING') OR (d."status" = 'FAILED' AND d."url" IS NULL) THEN NULL ELSE d."createdAt" END
FROM "Deployment" d
JOIN LATERAL (SELECT "id" FROM "Operation" WHERE "deploymentId" = d."id" AND "kind" = 'DEPLOY' ORDER BY "startedAt" LIMIT 1) o ON true;
UPDATE "Deployment" d SET "revisionId" = r."id" FROM "Revision" r WHERE r."deploymentId" = d."id";
UPDATE "Replica" p SET "revisionId" = d."revisionId" FROM "Deployment" d WHERE p."deploymentId" = d."id";
