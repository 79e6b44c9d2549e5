/**
 * Undo steps registered while an ADD changes the system. If the ADD fails, they run newest
 * first, so that a failed ADD leaves nothing behind. Undo steps must tolerate the thing being
 * already gone.
 */
export interface UndoStep {
  what: string;
  undo: () => Promise<void> | void;
}

export class Rollback {
  private steps: UndoStep[] = [];

  push(what: string, undo: () => Promise<void> | void): void {
    this.steps.push({ what, undo });
  }

  get size(): number {
    return this.steps.length;
  }

  /** Runs every step newest first, past failures; returns what failed. */
  async run(onError?: (what: string, err: unknown) => void): Promise<Array<{ what: string; err: unknown }>> {
    const failed: Array<{ what: string; err: unknown }> = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.undo();
      } catch (err) {
        failed.push({ what: step.what, err });
        onError?.(step.what, err);
      }
    }
    return failed;
  }

  /** Forgets the steps once the ADD has succeeded. */
  commit(): void {
    this.steps = [];
  }
}
