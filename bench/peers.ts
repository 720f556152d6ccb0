import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DOWNLOAD_CONNECTIONS, DOWNLOAD_PART_BYTES, type PeerId } from './config.js';
import { parallelDownloadInChild } from './download.js';
import { pidsServing, startMountCommand, unmount } from './mounts.js';
import { CREDENTIALS, REGION } from './s3.js';
import type { ImageSpec } from './workloads.js';

/**
 * How each peer gets the image mounted. Every peer reads the same object, from the same server,
 * through the same proxy; only C reads the local image file.
 */

export interface PeerContext {
  proxyUrl: string;
  bucket: string;
  image: ImageSpec;
  /** A fresh directory for this peer's mountpoints and files. */
  workDir: string;
  /** Extra arguments for our mount command (e.g. --log-level debug --log-file F). */
  ourMountArgs?: string[];
  /** Peer `before`: bin/squashfs-r2 of an earlier checkout (built). */
  beforeCli?: string;
}

export interface MountedPeer {
  root: string;
  /** Wall time from the start of mounting until `root` serves the image. */
  mountMs: number;
  /** The FUSE daemons (for peak RSS). */
  pids: number[];
  /** Peer-specific numbers (download time, GETs of the downloader...). */
  extra: Record<string, number>;
  teardown(): Promise<void>;
}

const REPO = resolve(import.meta.dirname, '..', '..');
export const OUR_CLI = join(REPO, 'bin', 'squashfs-r2');

/** Tears down mounts in reverse order, even when one of them fails. */
function teardownAll(mounts: { mountpoint: string; pids: number[] }[], files: string[] = []): () => Promise<void> {
  return async () => {
    for (const m of [...mounts].reverse()) await unmount(m.mountpoint, m.pids).catch(() => undefined);
    for (const f of files) await rm(f, { force: true, recursive: true });
  };
}

async function squashfuse(image: string, mountpoint: string): Promise<void> {
  await startMountCommand('squashfuse', [image, mountpoint], mountpoint);
}

export async function mountPeer(peer: PeerId, ctx: PeerContext): Promise<MountedPeer> {
  const mnt = join(ctx.workDir, 'mnt');
  await mkdir(mnt, { recursive: true });
  const mounted: { mountpoint: string; pids: number[] }[] = [];
  const t0 = performance.now();
  try {
    switch (peer) {
      case 'C': {
        mounted.push({ mountpoint: mnt, pids: [] });
        await squashfuse(ctx.image.imagePath, mnt);
        return done(mnt, mounted, t0, {});
      }
      case 'B': {
        const local = join(ctx.workDir, 'data.sqsh');
        const dl = await parallelDownloadInChild({
          endpoint: ctx.proxyUrl,
          bucket: ctx.bucket,
          key: ctx.image.key,
          dest: local,
          connections: DOWNLOAD_CONNECTIONS,
          partBytes: DOWNLOAD_PART_BYTES,
        });
        mounted.push({ mountpoint: mnt, pids: [] });
        const tMount = performance.now();
        await squashfuse(local, mnt);
        // The downloader runs in its own process (see download.ts); its start-up is the harness's
        // cost, not the peer's: count the download as the downloader timed it.
        const mountMs = dl.ms + (performance.now() - tMount);
        return done(mnt, mounted, performance.now() - mountMs, { downloadMs: dl.ms, downloadGets: dl.gets }, [local]);
      }
      case 'A': {
        const s3mnt = join(ctx.workDir, 's3');
        const passwd = join(ctx.workDir, 'passwd-s3fs');
        await mkdir(s3mnt, { recursive: true });
        await writeFile(passwd, `${CREDENTIALS.accessKeyId}:${CREDENTIALS.secretAccessKey}\n`);
        await chmod(passwd, 0o600);
        const prefix = ctx.image.key.slice(0, ctx.image.key.lastIndexOf('/'));
        mounted.push({ mountpoint: s3mnt, pids: [] });
        await startMountCommand(
          's3fs',
          [
            `${ctx.bucket}:/${prefix}`,
            s3mnt,
            '-o',
            `ro,url=${ctx.proxyUrl},use_path_request_style,passwd_file=${passwd}`,
          ],
          s3mnt,
        );
        const image = join(s3mnt, ctx.image.key.slice(prefix.length + 1));
        mounted.push({ mountpoint: mnt, pids: [] });
        await squashfuse(image, mnt);
        return done(mnt, mounted, t0, {}, [passwd]);
      }
      case 'us':
      case 'before': {
        const cli = peer === 'us' ? OUR_CLI : ctx.beforeCli;
        if (!cli) throw new Error('peer "before" needs --before-cli PATH');
        mounted.push({ mountpoint: mnt, pids: [] });
        const env = {
          ...process.env,
          AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
          AWS_REGION: REGION,
        };
        await startMountCommand(
          cli,
          [
            'mount',
            `s3://${ctx.bucket}/${ctx.image.key}`,
            mnt,
            '--endpoint',
            ctx.proxyUrl,
            '--path-style',
            ...(ctx.ourMountArgs ?? []),
          ],
          mnt,
          { env },
        );
        return done(mnt, mounted, t0, {});
      }
    }
  } catch (e) {
    await teardownAll(mounted)();
    throw e;
  }
}

async function done(
  root: string,
  mounted: { mountpoint: string; pids: number[] }[],
  t0: number,
  extra: Record<string, number>,
  files: string[] = [],
): Promise<MountedPeer> {
  const mountMs = performance.now() - t0;
  for (const m of mounted) m.pids = await pidsServing(m.mountpoint);
  return {
    root,
    mountMs,
    pids: mounted.flatMap((m) => m.pids),
    extra,
    teardown: teardownAll(mounted, files),
  };
}
