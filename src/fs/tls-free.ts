/**
 * Node 20 loads the file NODE_EXTRA_CA_CERTS names when it starts (about 45 ms on the machines here),
 * whether or not the process will ever use TLS. A mount server that cannot make a TLS connection is
 * started without it: its source is a local file or an http:// URL, or s3:// / r2:// at an explicit
 * http:// `--endpoint` with keys in the environment and no `--profile` (the AWS SDK's other credential
 * providers may go to STS or SSO over https). Anything else keeps the variable.
 *
 * bin/squashfs-r2 applies the same rule in sh (tls_free) before it starts a server without node;
 * test/fs/tls-free.test.ts runs both over the same cases.
 */
export function tlsFree(args: readonly string[], env: NodeJS.ProcessEnv): boolean {
  let remote = false;
  let endpoint = '';
  let previous = '';
  for (const a of args) {
    if (previous === '--endpoint') endpoint = a;
    if (a.startsWith('--endpoint=')) endpoint = a.slice('--endpoint='.length);
    else if (a === '--profile' || a.startsWith('--profile=')) return false;
    else if (a.startsWith('https://')) return false;
    else if (a.startsWith('s3://') || a.startsWith('r2://')) remote = true;
    previous = a;
  }
  if (!remote) return true;
  if (!endpoint.startsWith('http://')) return false;
  return Boolean((env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) || (env.R2_ACCESS_KEY_ID && env.R2_SECRET_ACCESS_KEY));
}

/** `env` without NODE_EXTRA_CA_CERTS when a server started with `args` needs no TLS, else `env` itself. */
export function withoutUnusedCaBundle(args: readonly string[], env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (env.NODE_EXTRA_CA_CERTS === undefined || !tlsFree(args, env)) return env;
  const { NODE_EXTRA_CA_CERTS: _unused, ...rest } = env;
  return rest;
}
