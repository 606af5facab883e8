-- DropIndex
DROP INDEX "ProviderCredential_workspaceId_provider_name_key";

-- AlterTable
ALTER TABLE "ProviderCredential" RENAME COLUMN "provider" TO "target";
ALTER TABLE "ProviderCredential" RENAME COLUMN "ciphertext" TO "sealed";
ALTER TABLE "ProviderCredential" ALTER COLUMN "sealed" DROP NOT NULL,
ADD COLUMN "last4" TEXT NOT NULL DEFAULT '',
ADD COLUMN "accountId" TEXT,
ADD COLUMN "rotatedAt" TIMESTAMP(3),
ADD COLUMN "deletedAt" TIMESTAMP(3);
ALTER TABLE "ProviderCredential" ALTER COLUMN "last4" DROP DEFAULT;

-- AlterTable
ALTER TABLE "Deployment" ADD COLUMN "credentialId" TEXT;

-- CreateIndex
CREATE INDEX "ProviderCredential_workspaceId_idx" ON "ProviderCredential"("workspaceId");

-- CreateIndex
CREATE INDEX "Deployment_credentialId_idx" ON "Deployment"("credentialId");

-- AddForeignKey
ALTER TABLE "Deployment" ADD CONSTRAINT "Deployment_credentialId_fkey" FOREIGN KEY ("credentialId") REFERENCES "ProviderCredential"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
