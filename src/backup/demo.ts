import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createBackup } from './create.js';
import { listRestores } from './list.js';
import { readMounts } from './mounts.js';
import { requireOverlayTool } from './overlay.js';
import { headObject } from './remote.js';
import { mountBackup, teardownRestore } from './restore.js';
import { createS3Client } from './s3-client.js';

/**
 * The end-to-end demo: a local S3-compatible server (s3rver on 127.0.0.1, data in the demo's folder),
 * a sample directory backed up, restored lazily with mount-backup, read, written (the write lands in
 * the overlay's upper dir; the archive in the bucket is unchanged), restored again, and unmounted.
 * Everything it starts is stopped and removed at the end, also when a step fails.
 */
export interface DemoOptions {
  /** Folder for the server's data, the sample, the restore and its state (default: a new temp dir). */
  workDir?: string;
  keep?: boolean;
  compression?: 'lz4' | 'zstd' | 'gzip';
  out?: (line: string) => void;
}

const BUCKET = 'demo-backups';

async function sampleTree(root: string): Promise<void> {
  await mkdir(join(root, 'src'), { recursive: true });
  await mkdir(join(root, 'data'));
  await writeFile(join(root, 'README.md'), '# my sandbox\nA directory backed up as a squashfs archive in R2.\n');
  await writeFile(join(root, 'src/app.js'), 'console.log("hello from the restored sandbox");\n'.repeat(50));
  await writeFile(join(root, 'data/random.bin'), randomBytes(4 * 1024 * 1024));
  await writeFile(join(root, 'data/zeros.bin'), Buffer.alloc(8 * 1024 * 1024));
  await symlink('src/app.js', join(root, 'main.js'));
}

async function hashTree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(dir: string): Promise<void> {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile())
        out.set(
          relative(root, p),
          createHash('sha256')
            .update(await readFile(p))
            .digest('hex'),
        );
    }
  }
  await walk(root);
  return out;
}

function checkPrerequisites(): void {
  if (process.getuid?.() !== 0) throw new Error('the demo mounts FUSE filesystems: run it as root (sudo)');
  if (!existsSync('/dev/fuse')) throw new Error('/dev/fuse is missing: load the fuse module (modprobe fuse)');
  requireOverlayTool();
}

export async function runDemo(options: DemoOptions = {}): Promise<void> {
  const out = options.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const t0 = Date.now();
  let stepStart = t0;
  const step = (title: string) => {
    stepStart = Date.now();
    out(`\n[${((stepStart - t0) / 1000).toFixed(2).padStart(6)} s] ${title}`);
  };
  const note = (line: string) => out(`           ${line}`);
  const took = () => `${Date.now() - stepStart} ms`;

  checkPrerequisites();
  const work = options.workDir ?? (await mkdtemp(join(tmpdir(), 'squashfs-r2-demo-')));
  await mkdir(work, { recursive: true });
  const paths = {
    s3: join(work, 's3-data'),
    sample: join(work, 'sample'),
    target: join(work, 'restored'),
    state: join(work, 'state'),
  };
  // A local server's fixed keys; real R2 keys in the environment must not be sent to it.
  const savedEnv = { ...process.env };
  for (const k of [
    'R2_ACCESS_KEY_ID',
    'R2_SECRET_ACCESS_KEY',
    'AWS_SESSION_TOKEN',
    'AWS_PROFILE',
    'AWS_ENDPOINT_URL',
    'AWS_ENDPOINT_URL_S3',
  ]) {
    delete process.env[k];
  }
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';

  const { startS3Server } = await import('../testing/s3-server.js');
  let server: Awaited<ReturnType<typeof startS3Server>> | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      await teardownRestore(paths.target, { stateDir: paths.state, discardWrites: true }).catch(() => undefined);
      await server?.close().catch(() => undefined);
      process.env = savedEnv;
      if (!options.keep && !options.workDir) await rm(work, { recursive: true, force: true });
    })());
  // Ctrl-C mid-demo still unmounts everything and stops the server.
  const onSignal = (signal: NodeJS.Signals) => {
    out(`\n${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    step('Starting a local S3-compatible server (s3rver, 127.0.0.1)');
    await mkdir(paths.s3, { recursive: true });
    server = await startS3Server({ directory: paths.s3, buckets: [BUCKET] });
    const bucket = { bucket: BUCKET, endpoint: server.endpoint };
    note(`endpoint ${server.endpoint}, bucket "${BUCKET}", data in ${paths.s3} (${took()})`);

    step('Creating a sample directory');
    await sampleTree(paths.sample);
    const source = await hashTree(paths.sample);
    note(`${paths.sample}: ${source.size} files, 12 MiB (${took()})`);

    step(`create-backup ${paths.sample}  (mksquashfs -comp ${options.compression ?? 'lz4'}, multipart upload)`);
    const meta = await createBackup(paths.sample, {
      ...bucket,
      compression: options.compression,
      name: 'demo',
      ttl: 3600,
    });
    const archiveKey = `backups/${meta.id}/data.sqsh`;
    const client = await createS3Client(bucket);
    const before = await headObject(client, bucket, archiveKey);
    note(`backup id ${meta.id}: ${archiveKey} (${meta.sizeBytes} bytes, ETag ${before.etag}) + meta.json (${took()})`);

    step(`mount-backup ${meta.id} ${paths.target}`);
    await mkdir(paths.target, { recursive: true });
    const first = await mountBackup(meta.id, paths.target, { ...bucket, stateDir: paths.state });
    const t = first.timingsMs;
    note(
      `usable after ${t.total} ms: meta.json ${t.meta} ms, lazy lower mount ${t.lower} ms, fuse-overlayfs ${t.overlay} ms`,
    );
    note(`lower (read-only, ranged GETs): ${first.record.lower}`);

    step('Reading every file through the overlay');
    const restored = await hashTree(paths.target);
    const same = [...source].every(([p, h]) => restored.get(p) === h) && restored.size === source.size;
    if (!same) throw new Error('restored files differ from the sample');
    note(`all ${restored.size} files identical to the sample (${took()})`);

    step('Writing into the restored directory');
    await writeFile(join(paths.target, 'notes.txt'), 'written after the restore\n');
    const inUpper = existsSync(join(first.record.upper, 'notes.txt'));
    const after = await headObject(client, bucket, archiveKey);
    client.destroy();
    if (!inUpper) throw new Error('the write did not land in the upper dir');
    if (after.etag !== before.etag) throw new Error('the archive in the bucket changed');
    note(`notes.txt landed in the upper dir ${first.record.upper}`);
    note(`the archive in the bucket is unchanged (ETag ${after.etag}) (${took()})`);

    step('Restoring the same backup again onto the same directory');
    const second = await mountBackup(meta.id, paths.target, { ...bucket, stateDir: paths.state });
    const saved = second.replaced[0]?.savedWrites;
    note(`previous overlay and lower mount torn down; fresh restore in ${second.timingsMs.total} ms`);
    note(
      `notes.txt is ${existsSync(join(paths.target, 'notes.txt')) ? 'STILL THERE (unexpected)' : 'gone'}; earlier writes saved in ${saved}`,
    );

    step('squashfs-r2 list');
    for (const r of await listRestores(paths.state)) {
      const s = r.stats as { source?: { transport?: { requests?: number; bytes?: number } } } | undefined;
      const tr = s?.source?.transport;
      note(
        `${r.dir}: backup ${r.backupId} (${r.health}), source ${r.source}${tr ? `, ${tr.requests} GETs, ${tr.bytes} bytes fetched` : ''}`,
      );
    }

    step(`squashfs-r2 unmount ${paths.target}`);
    await teardownRestore(paths.target, { stateDir: paths.state, discardWrites: true });
    const left = readMounts().filter((m) => m.mountPoint.startsWith(work));
    if (left.length) throw new Error(`still mounted: ${left.map((m) => m.mountPoint).join(', ')}`);
    note(`overlay, lower mount and its process are gone (${took()})`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
    out(
      `\n[${((Date.now() - t0) / 1000).toFixed(2).padStart(6)} s] done${options.keep || options.workDir ? `; files kept in ${work}` : ', everything cleaned up'}`,
    );
  }
}
