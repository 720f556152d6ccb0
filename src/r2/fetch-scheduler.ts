/**
 * Admits ranged fetches under a bounded number of concurrent requests, in two classes:
 * foreground (a reader waits) and readahead (nobody waits yet). Foreground work always goes first;
 * readahead only starts when no foreground fetch is queued, uses at most its own smaller budget, and
 * a queued readahead fetch is dropped when it is no longer wanted or the cache has no room for it.
 * The cache withdraws a queued readahead fetch a reader starts waiting on and resubmits the needed
 * part as foreground.
 */

export type FetchPriority = 'foreground' | 'readahead';

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
  /** Reserves memory for a task about to start; false = no room (readahead is then dropped). */
  admit(task: SchedulerTask): boolean;
}

export class FetchScheduler {
  private readonly foregroundQueue: SchedulerTask[] = [];
  private readonly readaheadQueue: SchedulerTask[] = [];
  private runningForeground = 0;
  private runningReadahead = 0;
  private closed = false;

  constructor(private readonly options: SchedulerOptions) {}

  get running(): number {
    return this.runningForeground + this.runningReadahead;
  }

  get queued(): number {
    return this.foregroundQueue.length + this.readaheadQueue.length;
  }

  submit(task: SchedulerTask): void {
    if (this.closed) {
      task.skip(new Error('source is closed'));
      return;
    }
    (task.priority === 'foreground' ? this.foregroundQueue : this.readaheadQueue).push(task);
    this.pump();
  }

  /** Removes a task that has not started; false if it is not queued (already running or settled). */
  withdraw(task: SchedulerTask): boolean {
    for (const queue of [this.foregroundQueue, this.readaheadQueue]) {
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
    for (const task of this.foregroundQueue.splice(0)) task.skip(reason);
    for (const task of this.readaheadQueue.splice(0)) task.skip(reason);
  }

  private pump(): void {
    const { maxConcurrent, maxReadahead } = this.options;
    while (this.foregroundQueue.length > 0 && this.running < maxConcurrent) {
      const task = this.foregroundQueue.shift()!;
      this.options.admit(task); // a reader waits: it runs even when memory is tight
      this.start(task, 'foreground');
    }
    while (
      this.foregroundQueue.length === 0 &&
      this.readaheadQueue.length > 0 &&
      this.runningReadahead < maxReadahead &&
      this.running < maxConcurrent
    ) {
      const task = this.readaheadQueue.shift()!;
      if (!task.wanted()) {
        task.skip(new Error('readahead no longer wanted'));
        continue;
      }
      if (!this.options.admit(task)) {
        task.skip(new Error('no room for readahead'));
        continue;
      }
      this.start(task, 'readahead');
    }
  }

  private start(task: SchedulerTask, slot: FetchPriority): void {
    if (slot === 'foreground') this.runningForeground++;
    else this.runningReadahead++;
    const release = () => {
      if (slot === 'foreground') this.runningForeground--;
      else this.runningReadahead--;
      if (!this.closed) this.pump();
    };
    task.run().then(release, release);
  }
}
