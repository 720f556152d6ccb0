import { parseCommandArgs } from '../../backup/cli-options.js';
import { listRestores } from '../../backup/list.js';

export const usage = `usage: squashfs-r2 list [--state-dir D] [--json]

Lists active restores (made by mount-backup): backup id, dir, source, health, lower mount process,
and cache stats when the lower mount publishes them.
`;

export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs(
    { args: argv, options: { 'state-dir': { type: 'string' }, json: { type: 'boolean' } } },
    usage,
  );
  const restores = await listRestores(parsed.values['state-dir']);
  if (parsed.values.json) {
    process.stdout.write(`${JSON.stringify(restores, null, 2)}\n`);
    return 0;
  }
  if (!restores.length) {
    process.stdout.write('no active restores\n');
    return 0;
  }
  for (const r of restores) {
    const name = r.backupName ? ` "${r.backupName}"` : '';
    process.stdout.write(
      `${r.dir}\n  backup ${r.backupId}${name}, restored ${r.createdAt}, ${r.health}\n  source ${r.source}\n`,
    );
    process.stdout.write(`  lower ${r.lower} (pid ${r.lowerPid ?? '-'}${r.lowerAlive ? '' : ', not running'})\n`);
    if (r.health === 'broken') {
      const missing = [
        !r.overlayMounted && 'overlay not mounted',
        !r.lowerMounted && 'lower not mounted',
        !r.lowerAlive && 'lower process gone',
      ];
      process.stdout.write(
        `  problem: ${missing.filter(Boolean).join(', ')}; run "squashfs-r2 unmount ${r.dir}" to clean up\n`,
      );
    }
    if (r.stats !== undefined) process.stdout.write(`  stats ${JSON.stringify(r.stats)}\n`);
  }
  return 0;
}
