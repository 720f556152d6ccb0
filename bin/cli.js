#!/usr/bin/env node
// The CLI as `node bin/cli.js`: the same as bin/cli.cjs, which bin/squashfs-r2 runs (see there).
import { createRequire } from 'node:module';

createRequire(import.meta.url)('./cli.cjs').cli(process.argv.slice(2));
