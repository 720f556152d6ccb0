import { configureLogging, describeError } from '../util/log.js';

/**
 * Command dispatcher. Each command lives in `commands/<name>.ts` and exports
 * `run(argv: string[]): Promise<number>` (the exit code) and `usage: string`.
 * Commands are imported lazily so `squashfs-r2 ls` never loads the AWS SDK or FUSE.
 */
const COMMANDS: Record<string, string> = {
  ls: 'List a directory of an image',
  stat: 'Show the inode of a path (or the superblock)',
  cat: 'Write a file of an image to stdout',
  extract: 'Extract an image (or a subtree) to a directory, like unsquashfs -d',
  mount: 'Mount an image (local file, s3://, r2://, http(s)://) with FUSE',
  unmount: 'Unmount a squashfs-r2 mount or a restored backup directory',
  'mount-backup': 'Restore a backup from R2/S3 onto a directory (lazy, writable overlay)',
  'create-backup': 'Archive a directory with mksquashfs and upload it as a backup',
  list: 'List active restores',
  demo: 'Run the end-to-end demo against a local S3-compatible server',
};

export function mainUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([c, d]) => `  ${c.padEnd(width)}  ${d}`);
  return `usage: squashfs-r2 <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun "squashfs-r2 <command> --help" for a command's options.\n`;
}

interface CommandModule {
  run(argv: string[]): Promise<number>;
  usage: string;
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === '--serve-detached') return serveDetached();
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(mainUsage());
    return name ? 0 : 2;
  }
  if (!(name in COMMANDS)) {
    process.stderr.write(`squashfs-r2: unknown command "${name}"\n\n${mainUsage()}`);
    return 2;
  }
  try {
    const mod = (await import(`./commands/${name}.js`)) as CommandModule;
    if (rest.includes('-h') || rest.includes('--help')) {
      process.stdout.write(mod.usage);
      return 0;
    }
    return await mod.run(rest);
  } catch (e) {
    process.stderr.write(`squashfs-r2 ${name}: ${describeError(e)}\n`);
    return (e as { exitCode?: number }).exitCode ?? 1;
  }
}

/**
 * A mount server started detached (bin/squashfs-r2, or `mount` from node; see src/fs/daemon.ts): its
 * command line comes on stdin, and its report, failures included, goes to fd 3, where the starter waits.
 */
async function serveDetached(): Promise<number> {
  // The only command served detached loads alongside the protocol module.
  const mounting = import('./commands/mount.js') as Promise<CommandModule>;
  mounting.catch(() => undefined); // reported below once the arguments are known
  const { READY_FD, readDetachedArgs, reportReadiness } = await import('../fs/daemon.js');
  let code = 1;
  try {
    const [name, ...rest] = readDetachedArgs();
    if (name !== 'mount') throw Object.assign(new Error(`"${name}" cannot run detached`), { exitCode: 2 });
    const mod = await mounting;
    code = await mod.run(['--ready-fd', String(READY_FD), ...rest]);
  } catch (e) {
    code = (e as { exitCode?: number }).exitCode ?? 1;
    reportReadiness(READY_FD, { error: `squashfs-r2 mount: ${describeError(e)}`, exitCode: code });
  }
  return code;
}

export function setLogOptions(level?: string, file?: string): void {
  configureLogging({ level: level as never, file });
}
