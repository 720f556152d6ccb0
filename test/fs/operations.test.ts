// The FUSE operation table: what is registered with libfuse decides which requests the kernel sends.
import { describe, expect, test } from 'vitest';
import { createOperations } from '../../src/fs/operations.js';
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
      // The read path is still there.
      for (const name of ['getattr', 'open', 'read', 'release', 'readdir']) expect(typeof handlers[name]).toBe('function');
    } finally {
      await image.close();
    }
  });
});
