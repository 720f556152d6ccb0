// The FUSE operation table: what is registered with libfuse decides which requests the kernel sends.
import { describe, expect, test } from 'vitest';
import { createOperations } from '../../src/fs/operations.js';
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
      // Nor open or release: libfuse answers them itself, without a round trip through this process.
      expect(handlers.open).toBeUndefined();
      expect(handlers.release).toBeUndefined();
      // The read path is still there.
      for (const name of ['getattr', 'read', 'readdir']) expect(typeof handlers[name]).toBe('function');
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
