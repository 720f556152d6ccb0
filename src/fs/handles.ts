import type { Inode } from '../squashfs/types.js';

/**
 * Open file handles: the number FUSE hands back on every read maps straight to the Inode, so a
 * read never resolves its path again. Numbers are reused after release; 0 is never handed out.
 */
export class HandleTable {
  private readonly open = new Map<number, Inode>();
  private readonly free: number[] = [];
  private next = 1;

  get size(): number {
    return this.open.size;
  }

  allocate(inode: Inode): number {
    const fd = this.free.pop() ?? this.next++;
    this.open.set(fd, inode);
    return fd;
  }

  get(fd: number): Inode | undefined {
    return this.open.get(fd);
  }

  release(fd: number): void {
    if (this.open.delete(fd)) this.free.push(fd);
  }
}
