// The FUSE operation table: what is registered with libfuse decides which requests the kernel sends.
import { describe, expect, test } from 'vitest';
import { release } from 'node:os';
import { createOperations, zeroMessageOpens } from '../../src/fs/operations.js';
import { fuseStatOf } from '../../src/fs/stat.js';
import { FileSource } from '../../src/r2/file.js';
import { SquashfsImage } from '../../src/squashfs/index.js';
import { fixture } from '../helpers/fixtures.js';

describe('operation table', () => {
  test('registers no flush or fsync: libfuse answers ENOSYS once and the kernel stops sending one per close()', async () => {
    const image = await SquashfsImage.open(await FileSource.open((await fixture('gzip-4k')).path));
    try {
      const { handlers } = createOperations(image);
      expect(handlers.flush).toBeUndefined();
      expect(handlers.fsync).toBeUndefined();
      // Nor release: the kernel sends none once OPEN has been answered ENOSYS (below).
      expect(handlers.release).toBeUndefined();
      // The read path is still there.
      for (const name of ['getattr', 'read', 'readdir']) expect(typeof handlers[name]).toBe('function');
    } finally {
      await image.close();
    }
  });
});

describe('open', () => {
  test('answers ENOSYS at once on Linux 3.15 and later (the kernel then opens files itself); unregistered before', async () => {
    const image = await SquashfsImage.open(await FileSource.open((await fixture('gzip-4k')).path));
    try {
      const { handlers, stats } = createOperations(image, { kernelRelease: '6.18.44-fc' });
      const replies: unknown[][] = [];
      handlers.open!('/sizes/text-1', 0, (...args: unknown[]) => replies.push(args));
      expect(replies).toEqual([[-38, 0]]);
      expect(stats().byOperation.open).toEqual({ count: 1, errors: 0 });
      for (const kernel of ['3.15.0', '4.19.0-25-amd64', '10.0.0']) {
        expect(typeof createOperations(image, { kernelRelease: kernel }).handlers.open).toBe('function');
      }
      // An older kernel would fail the open with ENOSYS: libfuse answers it (success) as before.
      for (const kernel of ['3.14.79', '2.6.32', 'unknown']) {
        expect(createOperations(image, { kernelRelease: kernel }).handlers.open).toBeUndefined();
      }
      expect(zeroMessageOpens(release())).toBe(true); // this machine's kernel
    } finally {
      await image.close();
    }
  });
});

describe('getattr', () => {
  test('answers a resolved path at once, a new one once resolved, a missing one with ENOENT', async () => {
    const image = await SquashfsImage.open(await FileSource.open((await fixture('gzip-4k')).path));
    try {
      const { handlers } = createOperations(image);
      const getattr = (path: string) =>
        new Promise<unknown[]>((done) => handlers.getattr(path, (...args: unknown[]) => done(args)));
      const expected = fuseStatOf((await image.lookup('/sizes/text-1')).stat);

      expect(await getattr('/sizes/text-1')).toEqual([0, expected]);
      const replies: unknown[][] = [];
      handlers.getattr('/sizes/text-1', (...args: unknown[]) => replies.push(args));
      expect(replies).toEqual([[0, expected]]); // no await: answered within the call
      expect(await getattr('/sizes/no-such-file')).toEqual([-2]);
      // A name in a listed directory (listing parsed, inodes decoded) is answered at once too.
      await new Promise((done) => handlers.readdir('/sizes', done));
      const other = (await image.readdir('/sizes')).find((e) => e.name !== 'text-1')!.name;
      const otherStat = fuseStatOf((await image.lookup(`/sizes/${other}`)).stat);
      handlers.getattr(`/sizes/${other}`, (...args: unknown[]) => replies.push(args));
      expect(replies).toEqual([[0, expected], [0, otherStat]]);
      expect(await getattr('/')).toEqual([0, fuseStatOf((await image.root()).stat)]);
    } finally {
      await image.close();
    }
  });
});
