/**
 * Admits ranged fetches under a bounded number of concurrent requests, in three classes:
 * foreground (a reader waits), readahead (a sequential reader will want it soon) and background
 * (hydration). A class only starts work when no higher class has any queued, and the two lower ones
 * each use at most their own smaller budget, so foreground reads always find a free slot soon. A
 * queued readahead fetch is dropped when it is no longer wanted or the cache has no room for it.
 * The cache withdraws a queued readahead fetch a reader starts waiting on and resubmits the needed
 * part as foreground.
 */

export type FetchPriority = 'foreground' | 'readahead' | 'background';

export interface SchedulerTask {
  priority: FetchPriority;
  readonly bytes: number;
  /** Performs the fetch; the slot is released when the promise settles. */
  run(): Promise<void>;
  /** Called instead of `run` when the task is dropped; must settle its waiters. */
  skip(reason: Error): void;
  /** Readahead only: still useful (its stream is alive, its chunks still missing)? */
  wanted(): boolean;
}

export interface SchedulerOptions {
  maxConcurrent: number;
  maxReadahead: number;
  maxBackground: number;
  /** Reserves memory for a task about to start; false = no room (readahead is then dropped). */
  admit(task: SchedulerTask): boolean;
}

export class FetchScheduler {
  private readonly queues: Record<FetchPriority, SchedulerTask[]> = { foreground: [], readahead: [], background: [] };
  private readonly runningBy: Record<FetchPriority, number> = { foreground: 0, readahead: 0, background: 0 };
  private closed = false;

  constructor(private readonly options: SchedulerOptions) {}

  get running(): number {
    return this.runningBy.foreground + this.runningBy.readahead + this.runningBy.background;
  }

  get queued(): number {
    return this.queues.foreground.length + this.queues.readahead.length + this.queues.background.length;
  }

  submit(task: SchedulerTask): void {
    if (this.closed) {
      task.skip(new Error('source is closed'));
      return;
    }
    this.queues[task.priority].push(task);
    this.pump();
  }

  /** Removes a task that has not started; false if it is not queued (already running or settled). */
  withdraw(task: SchedulerTask): boolean {
    for (const queue of Object.values(this.queues)) {
      const i = queue.indexOf(task);
      if (i >= 0) {
        queue.splice(i, 1);
        return true;
      }
    }
    return false;
  }

  /** Drops every queued task (running ones finish or are aborted by their owner). */
  close(reason: Error): void {
    this.closed = true;
    for (const queue of Object.values(this.queues)) for (const task of queue.splice(0)) task.skip(reason);
  }

  private pump(): void {
    const { maxConcurrent } = this.options;
    const { foreground, readahead, background } = this.queues;
    while (foreground.length > 0 && this.running < maxConcurrent) {
      const task = foreground.shift()!;
      this.options.admit(task); // a reader waits: it runs even when memory is tight
      this.start(task, 'foreground');
    }
    this.pumpLowPriority(readahead, 'readahead', this.options.maxReadahead, foreground.length === 0);
    this.pumpLowPriority(background, 'background', this.options.maxBackground, foreground.length === 0 && readahead.length === 0);
  }

  private pumpLowPriority(queue: SchedulerTask[], slot: FetchPriority, limit: number, higherIdle: boolean): void {
    while (higherIdle && queue.length > 0 && this.runningBy[slot] < limit && this.running < this.options.maxConcurrent) {
      const task = queue.shift()!;
      if (!task.wanted()) {
        task.skip(new Error(`${slot} fetch no longer wanted`));
        continue;
      }
      if (!this.options.admit(task)) {
        task.skip(new Error(`no room for ${slot} fetch`));
        continue;
      }
      this.start(task, slot);
    }
  }

  private start(task: SchedulerTask, slot: FetchPriority): void {
    this.runningBy[slot]++;
    const release = () => {
      this.runningBy[slot]--;
      if (!this.closed) this.pump();
    };
    task.run().then(release, release);
  }
}
