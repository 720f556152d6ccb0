#!/usr/bin/env node
'use strict';
// The CLI's node entry: bin/squashfs-r2 runs it, bin/cli.js and bin/mount-backup go through it.
//
// It runs dist/cli.bundle.cjs, the CLI's modules in one file (scripts/bundle.mjs), compiled with V8's
// code cache: a mount server then neither resolves ~100 ES modules nor parses and compiles them at
// each start (~30-55 ms of mount plus first file at 5-20 ms RTT on a 2-vCPU machine). The cache is
// V8's bytecode of what one run of a command compiled, made by that run and kept per bundle, node
// and flags in dist/.code-cache, behind a checksum of our own: V8 checks a cache's version, flags
// and source length, but takes its bytes on trust (a damaged cache aborts the process in V8).
// Without a bundle, or with one not newer than the tsc output it was made from (tsc ran since),
// the tsc output (dist/src) runs as it is.
// SQUASHFS_R2_LOADER_TRACE=1 says on stderr which of them ran and what became of the cache.
const fs = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { crc32 } = require('node:zlib');

const DIST = path.join(__dirname, '..', 'dist');
const BUNDLE = path.join(DIST, 'cli.bundle.cjs');
const MAIN = path.join(DIST, 'src', 'cli', 'main.js');
const CACHE_DIR = path.join(DIST, '.code-cache');
/** A server saves its cache this long after its start: by then it has mounted and served reads. */
const SAVE_AFTER_MS = 3000;
/** A cache file: this magic, the CRC-32 of the payload (both 4 bytes), then V8's cached data. */
const MAGIC = 0x53523243; // 'SR2C'
const HEADER_BYTES = 8;

const trace = process.env.SQUASHFS_R2_LOADER_TRACE
  ? (message) => process.stderr.write(`squashfs-r2 loader: ${message}\n`)
  : () => {};

/** Runs the CLI with these arguments; the exit code becomes process.exitCode. */
function cli(argv, name = 'squashfs-r2') {
  let main;
  try {
    main = bundledMain(argv);
  } catch (e) {
    trace(`bundle not run: ${e.message}`); // the tsc output below is the same program
  }
  const loading = main ? Promise.resolve({ main }) : import(pathToFileURL(MAIN).href);
  loading.then(
    async (m) => {
      process.exitCode = await m.main(argv);
    },
    (e) => {
      console.error(`${name}: not built? run "npm ci && npm run build" (${e.message})`);
      process.exitCode = 1;
    },
  );
}

/** The bundle's main(), compiled with the code cache; undefined when the bundle is missing or stale. */
function bundledMain(argv) {
  const bundle = fs.statSync(BUNDLE, { throwIfNoEntry: false });
  const built = fs.statSync(MAIN, { throwIfNoEntry: false });
  if (!bundle || !built || bundle.mtimeMs <= built.mtimeMs) {
    trace(`running dist/src (${bundle ? 'the bundle is older than it' : 'no bundle'})`);
    return undefined;
  }
  const vm = require('node:vm');
  const source = fs.readFileSync(BUNDLE, 'utf8');
  // Named by the bundle's content: a cache must never meet another bundle of the same length.
  const build = hex(crc32(source));
  // V8 refuses a cache made under other V8 flags: those of the command line and of NODE_OPTIONS.
  const flavor = hex(crc32(`${process.version} ${process.arch} ${process.execArgv.join(' ')} ${process.env.NODE_OPTIONS ?? ''}`));
  const file = path.join(CACHE_DIR, `${build}-${flavor}-${role(argv)}.bin`);
  const cachedData = readCache(file);
  // On the wrapper's line, so that line numbers in stack traces are the bundle's own.
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: BUNDLE,
    cachedData: cachedData === DAMAGED ? undefined : cachedData,
  });
  const state = cachedData === undefined ? 'none' : cachedData === DAMAGED ? 'damaged' : script.cachedDataRejected ? 'rejected' : 'used';
  trace(`running the bundle, code cache ${state} (${path.basename(file)})`);
  if (state !== 'used') saveLater(script, file, build);
  const module = { exports: {} };
  script.runInThisContext().call(module.exports, module.exports, require('node:module').createRequire(BUNDLE), module, BUNDLE, DIST);
  return module.exports.main;
}

/** The cache's part of the name: each command compiles its own set of functions. */
function role(argv) {
  const command = argv[0] === '--serve-detached' ? 'serve' : argv[0];
  return /^[a-z][a-z-]{0,30}$/.test(command ?? '') ? command : 'other';
}

/**
 * Writes the cache once, SAVE_AFTER_MS after start or at exit, whichever is first; atomically (a
 * reader sees a whole file or none). Caches of other bundle builds go. Failing (a read-only install)
 * only costs the next start its speed.
 */
function saveLater(script, file, build) {
  let saved = false;
  const save = () => {
    if (saved) return;
    saved = true;
    const partial = `${file}.${process.pid}.partial`;
    try {
      const data = script.createCachedData();
      const header = Buffer.alloc(HEADER_BYTES);
      header.writeUInt32BE(MAGIC, 0);
      header.writeUInt32BE(crc32(data), 4);
      fs.mkdirSync(CACHE_DIR, { recursive: true });
      fs.writeFileSync(partial, Buffer.concat([header, data]));
      fs.renameSync(partial, file);
      for (const old of fs.readdirSync(CACHE_DIR)) {
        if (!old.startsWith(`${build}-`)) fs.rmSync(path.join(CACHE_DIR, old), { force: true });
      }
      trace(`code cache saved (${data.length} bytes)`);
    } catch (e) {
      try {
        fs.rmSync(partial, { force: true }); // a full disk leaves no half file behind
      } catch {
        // there was no directory to write it in
      }
      trace(`code cache not saved: ${e.message}`);
    }
  };
  setTimeout(save, SAVE_AFTER_MS).unref();
  process.once('exit', save);
}

const DAMAGED = Symbol('damaged');

/** The cached data of a cache file; undefined when there is none, DAMAGED when its checksum fails. */
function readCache(file) {
  let bytes;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    return undefined;
  }
  if (bytes.length <= HEADER_BYTES || bytes.readUInt32BE(0) !== MAGIC) return DAMAGED;
  const data = bytes.subarray(HEADER_BYTES);
  return crc32(data) === bytes.readUInt32BE(4) ? data : DAMAGED;
}

const hex = (n) => n.toString(16).padStart(8, '0');

module.exports = { cli };
if (require.main === module) cli(process.argv.slice(2));
