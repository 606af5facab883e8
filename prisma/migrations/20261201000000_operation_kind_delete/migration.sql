-- AlterEnum
ALTER TYPE "OperationKind" ADD VALUE 'DELETE';
