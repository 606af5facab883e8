-- CreateTable
CREATE TABLE "LoadSample" (
    "deploymentId" TEXT NOT NULL,
    "minute" TIMESTAMP(3) NOT NULL,
    "gatewayId" TEXT NOT NULL,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    "inFlight" JSONB NOT NULL,
    "queued" JSONB NOT NULL,
    "requests" INTEGER NOT NULL DEFAULT 0,
    "errors" JSONB NOT NULL,
    "promptTokens" BIGINT NOT NULL DEFAULT 0,
    "completionTokens" BIGINT NOT NULL DEFAULT 0,
    "costUsd" DECIMAL(20,10) NOT NULL DEFAULT 0,
    "latency" BYTEA NOT NULL,
    "ttft" BYTEA NOT NULL,
    "replicasReady" INTEGER,
    "replicasStarting" INTEGER,
    "replicasDraining" INTEGER,
    "desired" INTEGER,

    CONSTRAINT "LoadSample_pkey" PRIMARY KEY ("deploymentId","minute","gatewayId")
);

-- CreateTable
CREATE TABLE "PlaygroundUsage" (
    "workspaceId" TEXT NOT NULL,
    "day" DATE NOT NULL,
    "requests" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "PlaygroundUsage_pkey" PRIMARY KEY ("workspaceId","day")
);

-- CreateIndex
CREATE INDEX "LoadSample_minute_idx" ON "LoadSample"("minute");

-- AddForeignKey
ALTER TABLE "LoadSample" ADD CONSTRAINT "LoadSample_deploymentId_fkey" FOREIGN KEY ("deploymentId") REFERENCES "Deployment"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "PlaygroundUsage" ADD CONSTRAINT "PlaygroundUsage_workspaceId_fkey" FOREIGN KEY ("workspaceId") REFERENCES "Workspace"("id") ON DELETE CASCADE ON UPDATE CASCADE;
