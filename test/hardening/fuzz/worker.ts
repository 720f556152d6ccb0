/**
 * The fuzz worker (a child process of the supervisor): exercises cases one after another and reports
 * each one's start and outcome, so the supervisor can time a hang or a crash to one case and kill us.
 */
import { basename } from 'node:path';
import { type LoadedBase, loadBases, makeCase, readImageFile } from './cases.js';
import { exerciseImage } from './exercise.js';
import type { WorkerConfig, WorkerMessage } from './protocol.js';

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve) => process.send!(m, undefined, {}, () => resolve()));
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2]!) as WorkerConfig;
  let bases: LoadedBase[] = [];
  const pristine: { base: string; result: Awaited<ReturnType<typeof exerciseImage>> }[] = [];
  if (config.bases) {
    bases = loadBases(config.bases);
    if (config.start === 0) {
      // The oracle itself is checked first: every base must walk without a single error.
      for (const b of bases) pristine.push({ base: b.name, result: await exerciseImage(b.bytes, config.budget) });
    }
  }
  await send({ t: 'ready', pristine });

  let peakRss = 0;
  let peakHeap = 0;
  const sample = (): void => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed + m.external);
  };
  const timer = setInterval(sample, 20);
  const total = config.images ? config.images.length : Infinity;
  for (let index = config.start; index < total; index++) {
    await send({ t: 'start', index });
    const c = config.images
      ? {
          index,
          base: basename(config.images[index]!),
          strategy: 'as-is',
          edits: [],
          bytes: readImageFile(config.images[index]!),
        }
      : makeCase(config.seed, index, bases);
    peakRss = 0;
    peakHeap = 0;
    const t0 = Date.now();
    const result = await exerciseImage(c.bytes, config.budget);
    sample();
    await send({
      t: 'done',
      index,
      base: c.base,
      strategy: c.strategy,
      edits: c.edits,
      result,
      ms: Date.now() - t0,
      peakRss,
      peakHeap,
    });
  }
  clearInterval(timer);
  process.disconnect?.();
}

export type WorkerEntry = typeof main;

main().catch((e: unknown) => {
  process.stderr.write(`fuzz worker: ${(e as Error)?.stack ?? String(e)}\n`);
  process.exit(70);
});
