// TEMPORARY stand-in for `squashfs-r2 mount -f` while the FUSE mount (issue 4) is not in the tree:
// downloads the archive with the SDK and serves it with squashfuse in the foreground.
// argv: <endpoint> <s3://bucket/key> <mountpoint>
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';

const [endpoint, source, mountpoint] = process.argv.slice(2);
const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(source);
const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true });
try {
  const res = await client.send(new GetObjectCommand({ Bucket: m[1], Key: m[2] }));
  const file = join(dirname(mountpoint), 'stand-in.sqsh');
  writeFileSync(file, await res.Body.transformToByteArray());
  const child = spawn('squashfuse', ['-f', file, mountpoint], { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code) => process.exit(code ?? 1));
} catch (e) {
  console.error(`stand-in lower: ${e.name}: ${e.message}`);
  process.exit(1);
}
