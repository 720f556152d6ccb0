import { appendFileSync } from 'node:fs';

/**
 * A small leveled logger. Every line passes through `redact`, so a credential that slips into a
 * message (a presigned URL, an Authorization header, a secret from the environment) is masked.
 * Lines go to stderr or to a log file (`--log-file`), as `time level scope: message`.
 */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

let threshold: LogLevel = (process.env.SQUASHFS_R2_LOG_LEVEL as LogLevel) in ORDER
  ? (process.env.SQUASHFS_R2_LOG_LEVEL as LogLevel)
  : 'warn';
let logFile: string | undefined;
const secrets = new Set<string>();

export function configureLogging(options: { level?: LogLevel; file?: string }): void {
  if (options.level) {
    if (!(options.level in ORDER)) throw new Error(`unknown log level "${options.level}" (error|warn|info|debug)`);
    threshold = options.level;
  }
  if (options.file !== undefined) logFile = options.file;
}

/** Registers a value that must never be printed (secret keys, session tokens). */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 4) secrets.add(value);
}

const QUERY_SECRETS = /([?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId|sig|token)=)[^&\s"']*/gi;
const AUTH_HEADER = /(authorization["']?\s*[:=]\s*["']?)[^"'\n]*/gi;

/** Masks signatures, presigned query values, Authorization headers and registered secrets. */
export function redact(text: string): string {
  let out = text.replace(QUERY_SECRETS, '$1REDACTED').replace(AUTH_HEADER, '$1REDACTED');
  for (const s of secrets) out = out.split(s).join('REDACTED');
  return out;
}

function write(level: LogLevel, scope: string, message: string): void {
  if (ORDER[level] > ORDER[threshold]) return;
  const line = redact(`${new Date().toISOString()} ${level} ${scope}: ${message}`) + '\n';
  if (logFile) {
    try {
      appendFileSync(logFile, line);
      return;
    } catch {
      // fall through to stderr: a broken log file must not take the mount down
    }
  }
  process.stderr.write(line);
}

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  enabled(level: LogLevel): boolean;
}

export function logger(scope: string): Logger {
  return {
    error: (m) => write('error', scope, m),
    warn: (m) => write('warn', scope, m),
    info: (m) => write('info', scope, m),
    debug: (m) => write('debug', scope, m),
    enabled: (level) => ORDER[level] <= ORDER[threshold],
  };
}

/** An error's message chain as one line, redacted (for CLI output). */
export function describeError(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let i = 0; cur !== undefined && cur !== null && i < 5; i++) {
    const msg = cur instanceof Error ? cur.message : String(cur);
    if (!parts.some((p) => p.includes(msg))) parts.push(msg);
    cur = cur instanceof Error ? (cur as Error & { cause?: unknown }).cause : undefined;
  }
  return redact(parts.join(': '));
}
