import { log } from '@temporalio/workflow';

/**
 * A compensation stack for workflows that change several systems: each step
 * pushes its undo right after it succeeds (or, for steps that may half-succeed,
 * right before), and on failure the undos run newest first. An undo that fails
 * is logged and the rest still run: compensation is best effort by design,
 * and every undo is an idempotent activity.
 */
export class Saga {
  private readonly undos: Array<{ name: string; run: () => Promise<unknown> }> = [];

  /** Registers the undo of the step about to run or just run. */
  add(name: string, run: () => Promise<unknown>): void {
    this.undos.push({ name, run });
  }

  /** Forgets every registered undo: what was done so far stands even if a later step fails. */
  commit(): void {
    this.undos.length = 0;
  }

  /** Runs every registered undo, newest first, once; returns the names of those that failed. */
  async compensate(): Promise<string[]> {
    const failed: string[] = [];
    for (const c of this.undos.splice(0).reverse()) {
      try {
        await c.run();
      } catch (err) {
        failed.push(c.name);
        log.error('compensation failed', { step: c.name, error: failureMessage(err) });
      }
    }
    return failed;
  }
}

/** The innermost message of a Temporal failure chain (ActivityFailure -> ApplicationFailure). */
export function failureMessage(err: unknown): string {
  let e = err as { message?: string; cause?: unknown } | undefined;
  while (e?.cause) e = e.cause as typeof e;
  return e?.message ?? String(err);
}
