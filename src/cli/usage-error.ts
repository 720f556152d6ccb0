/** A bad command line: the CLI prints the message (with usage) and exits 2, like other tools. */
export class UsageError extends Error {
  readonly exitCode = 2;
}
