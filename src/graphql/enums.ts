import { registerEnumType } from '@nestjs/graphql';
import {
  DeploymentMode,
  DeploymentStatus,
  KeyScope,
  OperationKind,
  OperationStatus,
  Plan,
  ReplicaState,
  RevisionStatus,
  Target,
  Task,
} from '../generated/prisma/enums';
import type * as domain from '../domain/targets';

// Prisma's enums are the GraphQL enums: one definition, no drift.
registerEnumType(Plan, { name: 'Plan' });
registerEnumType(Task, { name: 'Task' });
registerEnumType(Target, { name: 'Target', description: 'Where replicas run: LOCAL child processes, RUNPOD, MODAL, or a CUSTOM bundle.' });
registerEnumType(DeploymentMode, {
  name: 'DeploymentMode',
  description: 'FLEX scales to zero; ACTIVE keeps a warm floor (Team plan and up).',
});
registerEnumType(DeploymentStatus, { name: 'DeploymentStatus' });
registerEnumType(ReplicaState, { name: 'ReplicaState' });
registerEnumType(OperationKind, { name: 'OperationKind' });
registerEnumType(OperationStatus, { name: 'OperationStatus' });
registerEnumType(KeyScope, { name: 'KeyScope' });
registerEnumType(RevisionStatus, {
  name: 'RevisionStatus',
  description: 'STAGED beside the serving revision during a swap, SERVING (one per deployment), RETIRED after, FAILED if it never served.',
});

export { DeploymentMode, DeploymentStatus, KeyScope, OperationKind, OperationStatus, Plan, ReplicaState, RevisionStatus, Target, Task };

// The pure unions of src/domain/targets.ts are the Prisma enums: a value added to one and not the
// other fails to compile here.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameEnums: [Same<domain.Target, Target>, Same<domain.Mode, DeploymentMode>, Same<domain.Task, Task>] = [true, true, true];
void sameEnums;
