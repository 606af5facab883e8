// The load reporter's sink in the api: each report is a Temporal signal to its deployment's scaler workflow.
import { Client, WorkflowNotFoundError } from '@temporalio/client';
import { loadReportSignal, scalerWorkflowId } from '../../workflows/messages';
import { NoScalerError, ReportSink } from './reporter';

/** Signals `loadReportSignal` to `scalerWorkflowId(id)`; a deployment without a running scaler is a NoScalerError. */
export function scalerSink(temporal: Client): ReportSink {
  return async (deploymentId, report) => {
    try {
      await temporal.workflow.getHandle(scalerWorkflowId(deploymentId)).signal(loadReportSignal, report);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new NoScalerError(`deployment ${deploymentId} has no running scaler`);
      throw err;
    }
  };
}
