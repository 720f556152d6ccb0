import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { getRange, headObject } from './s3.js';

/**
 * Peer B's first half: download the whole object with parallel ranged GETs (N connections, fixed-size
 * parts), as the sandbox SDK does before it mounts the local copy with squashfuse.
 */
export interface DownloadResult {
  bytes: number;
  gets: number;
  ms: number;
}

export async function parallelDownload(options: {
  endpoint: string;
  bucket: string;
  key: string;
  dest: string;
  connections: number;
  partBytes: number;
}): Promise<DownloadResult> {
  const t0 = performance.now();
  const size = await headObject(options.endpoint, options.bucket, options.key);
  if (size === undefined) throw new Error(`${options.bucket}/${options.key} not found`);
  const pool = new Pool(options.endpoint, { connections: options.connections, pipelining: 1 });
  const fh = await open(options.dest, 'w');
  let gets = 0;
  try {
    await fh.truncate(size);
    const parts = Math.ceil(size / options.partBytes);
    let next = 0;
    const worker = async () => {
      while (next < parts) {
        const part = next++;
        const start = part * options.partBytes;
        const end = Math.min(size, start + options.partBytes) - 1;
        gets++;
        const res = await getRange(pool, options.endpoint, options.bucket, options.key, start, end);
        if (res.statusCode !== 206) {
          await res.body.dump();
          throw new Error(`GET part ${part}: HTTP ${res.statusCode}`);
        }
        let pos = start;
        for await (const chunk of res.body) {
          const buf = chunk as Buffer;
          await fh.write(buf, 0, buf.length, pos);
          pos += buf.length;
        }
        if (pos !== end + 1) throw new Error(`GET part ${part}: got ${pos - start} bytes, expected ${end + 1 - start}`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(options.connections, parts) }, worker));
  } finally {
    await fh.close();
    await pool.close();
  }
  return { bytes: size, gets, ms: performance.now() - t0 };
}

/**
 * Run as its own process (`node dist/bench/download.js '<options JSON>'`), as the SDK's downloader
 * is: in the harness it would share an event loop with the S3 server and the proxy.
 */
if (process.argv[1]?.endsWith('download.js')) {
  parallelDownload(JSON.parse(process.argv[2] ?? '{}') as Parameters<typeof parallelDownload>[0]).then(
    (r) => process.stdout.write(JSON.stringify(r)),
    (e: Error) => {
      process.stderr.write(`download: ${e.message}\n`);
      process.exitCode = 1;
    },
  );
}

/** parallelDownload in a child process. */
export function parallelDownloadInChild(options: Parameters<typeof parallelDownload>[0]): Promise<DownloadResult> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [fileURLToPath(import.meta.url), JSON.stringify(options)],
      { maxBuffer: 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`download failed: ${(stderr || err.message).trim().slice(0, 500)}`));
        else resolve(JSON.parse(stdout) as DownloadResult);
      },
    );
  });
}
