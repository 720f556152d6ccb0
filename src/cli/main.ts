import { configureLogging, describeError } from '../util/log.js';

interface CommandModule {
  run(argv: string[]): Promise<number>;
  usage: string;
}

/**
 * Command dispatcher. Each command lives in `commands/<name>.ts` and exports
 * `run(argv: string[]): Promise<number>` (the exit code) and `usage: string`.
 * Commands are imported lazily so `squashfs-r2 ls` never loads the AWS SDK or FUSE; each by a literal
 * specifier, so that the bundler (scripts/bundle.mjs) sees them all.
 */
const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  ls: { summary: 'List a directory of an image', load: () => import('./commands/ls.js') },
  stat: { summary: 'Show the inode of a path (or the superblock)', load: () => import('./commands/stat.js') },
  cat: { summary: 'Write a file of an image to stdout', load: () => import('./commands/cat.js') },
  extract: {
    summary: 'Extract an image (or a subtree) to a directory, like unsquashfs -d',
    load: () => import('./commands/extract.js'),
  },
  mount: {
    summary: 'Mount an image (local file, s3://, r2://, http(s)://) with FUSE',
    load: () => import('./commands/mount.js'),
  },
  unmount: {
    summary: 'Unmount a squashfs-r2 mount or a restored backup directory',
    load: () => import('./commands/unmount.js'),
  },
  'mount-backup': {
    summary: 'Restore a backup from R2/S3 onto a directory (lazy, writable overlay)',
    load: () => import('./commands/mount-backup.js'),
  },
  'create-backup': {
    summary: 'Archive a directory with mksquashfs and upload it as a backup',
    load: () => import('./commands/create-backup.js'),
  },
  list: { summary: 'List active restores', load: () => import('./commands/list.js') },
  demo: {
    summary: 'Run the end-to-end demo against a local S3-compatible server',
    load: () => import('./commands/demo.js'),
  },
};

export function mainUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  const lines = Object.entries(COMMANDS).map(([c, { summary }]) => `  ${c.padEnd(width)}  ${summary}`);
  return `usage: squashfs-r2 <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun "squashfs-r2 <command> --help" for a command's options.\n`;
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === '--serve-detached') return serveDetached();
  const [name, ...rest] = argv;
  if (!name || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(mainUsage());
    return name ? 0 : 2;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    process.stderr.write(`squashfs-r2: unknown command "${name}"\n\n${mainUsage()}`);
    return 2;
  }
  try {
    const mod = await command.load();
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
  const mounting = COMMANDS.mount!.load();
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
