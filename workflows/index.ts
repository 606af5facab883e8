// Entry of the workflow bundle: every workflow the worker runs.
export { deployWorkflow } from './deploy';
export { scalerWorkflow } from './scaler';
export { deleteWorkflow, startWorkflow, stopWorkflow, swapWorkflow } from './lifecycle';
export { driftCheckWorkflow, optimizeWorkflow, scheduledOptimizeWorkflow } from './optimize';
