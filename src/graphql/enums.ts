import { registerEnumType } from '@nestjs/graphql';
import { DeploymentMode, DeploymentStatus, KeyScope, OperationKind, OperationStatus, Plan, ReplicaState, Target, Task } from '../generated/prisma/enums';

// Prisma's enums are the GraphQL enums: one definition, no drift.
registerEnumType(Plan, { name: 'Plan' });
registerEnumType(Task, { name: 'Task' });
registerEnumType(Target, { name: 'Target', description: 'Where replicas run: LOCAL child processes, RUNPOD, MODAL, or a CUSTOM bundle.' });
registerEnumType(DeploymentMode, { name: 'DeploymentMode', description: 'FLEX scales to zero; ACTIVE keeps a warm floor (Team plan and up).' });
registerEnumType(DeploymentStatus, { name: 'DeploymentStatus' });
registerEnumType(ReplicaState, { name: 'ReplicaState' });
registerEnumType(OperationKind, { name: 'OperationKind' });
registerEnumType(OperationStatus, { name: 'OperationStatus' });
registerEnumType(KeyScope, { name: 'KeyScope' });

export { DeploymentMode, DeploymentStatus, KeyScope, OperationKind, OperationStatus, Plan, ReplicaState, Target, Task };
