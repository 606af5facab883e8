-- CreateEnum
CREATE TYPE "VariantStatus" AS ENUM ('UNMEASURED', 'PENDING', 'MEASURING', 'MEASURED', 'REJECTED', 'FAILED');

-- AlterTable
ALTER TABLE "OptimizationRun" ADD COLUMN "trigger" TEXT NOT NULL DEFAULT 'MANUAL',
ADD COLUMN "redeploy" TEXT NOT NULL DEFAULT 'NEVER',
ADD COLUMN "gpus" TEXT[] DEFAULT ARRAY[]::TEXT[],
ADD COLUMN "load" JSONB,
ADD COLUMN "winnerVariantId" TEXT,
ADD COLUMN "redeployments" JSONB;

-- AlterTable
ALTER TABLE "Variant" ADD COLUMN "status" "VariantStatus" NOT NULL DEFAULT 'UNMEASURED',
ADD COLUMN "rank" INTEGER,
ADD COLUMN "reason" TEXT,
ADD COLUMN "metrics" JSONB,
ADD COLUMN "sweep" JSONB;

-- CreateTable
CREATE TABLE "ReoptimizationSchedule" (
    "pipelineId" TEXT NOT NULL,
    "scheduleId" TEXT NOT NULL,
    "everySeconds" INTEGER,
    "cron" TEXT,
    "priority" TEXT NOT NULL,
    "constraints" JSONB,
    "gpus" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "redeploy" TEXT NOT NULL,
    "paused" BOOLEAN NOT NULL DEFAULT false,
    "runOnDrift" BOOLEAN NOT NULL DEFAULT true,
    "load" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "ReoptimizationSchedule_pkey" PRIMARY KEY ("pipelineId")
);

-- CreateIndex
CREATE UNIQUE INDEX "ReoptimizationSchedule_scheduleId_key" ON "ReoptimizationSchedule"("scheduleId");

-- AddForeignKey
ALTER TABLE "ReoptimizationSchedule" ADD CONSTRAINT "ReoptimizationSchedule_pipelineId_fkey" FOREIGN KEY ("pipelineId") REFERENCES "Pipeline"("id") ON DELETE CASCADE ON UPDATE CASCADE;
