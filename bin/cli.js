#!/usr/bin/env node
// The CLI in node (bin/squashfs-r2 runs it). Kept tiny: start-up time counts toward every mount.
import('../dist/src/cli/main.js').then(
  async (m) => { process.exitCode = await m.main(process.argv.slice(2)); },
  (e) => { console.error(`squashfs-r2: not built? run "npm ci && npm run build" (${e.message})`); process.exitCode = 1; },
);
