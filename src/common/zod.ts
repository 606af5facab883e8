import type { ZodError } from 'zod';

/** A zod issue path and message as one line: "maxReplicas: must be at most 8". */
export function zodMessage(err: ZodError): string {
  return err.issues.map((i) => `${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`).join('; ');
}
