// `npm run build`, after tsc: the CLI's compiled modules (dist/src) as one CommonJS file,
// dist/cli.bundle.cjs, which bin/cli.cjs runs with V8's code cache (see there why). Packages from
// node_modules and node's own modules stay outside it (required at run time, native addons included).
import { readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { rolldown } from 'rolldown';

const root = resolve(import.meta.dirname, '..');
const entry = join(root, 'dist', 'src', 'cli', 'main.js');
const output = join(root, 'dist', 'cli.bundle.cjs');

/**
 * Every bundled module keeps its own import.meta.url: its compiled file in dist/src. Modules find files
 * beside them by it (bin/cli.cjs for a server, lower-daemon.js, native addons through createRequire),
 * and those paths must not change with the bundle's place. Through a helper in the bundle's first line:
 * a module may have a local named `require` (createRequire's), which code put in its place would see.
 */
const MODULE_URL = '__squashfsR2ModuleUrl';
const moduleUrlHelper = `const ${MODULE_URL} = (path) => require("node:url").pathToFileURL(require("node:path").join(__dirname, path)).href;`;
const ownUrl = {
  name: 'own-import-meta-url',
  transform(code, id) {
    if (!code.includes('import.meta')) return null;
    const path = JSON.stringify(relative(dirname(output), id));
    const rewritten = code.replaceAll(
      'import.meta.url',
      `${MODULE_URL}(${path})`,
    );
    if (rewritten.includes('import.meta')) {
      throw new Error(`${relative(root, id)}: import.meta other than import.meta.url cannot be bundled`);
    }
    return { code: rewritten, map: null };
  },
};

/**
 * Packages and node: modules are required where the module that imports them runs, not at the
 * bundle's start: a bundler puts an ES module's external imports at the top of the output, and
 * the CLI's start would then load every one of them (lz4-napi, node:crypto, node:net, ... ~60 ms),
 * needed or not, where the ES modules load each with the module that needs it. So each becomes a
 * small CommonJS module of the bundle, initialised on first use, whose require() stays in place.
 */
const EXTERNAL = '\0external:';
/**
 * Pure JavaScript packages every mount loads, bundled so that the code cache covers them: lru-cache
 * required from node_modules cost 6-14 ms of each mount's start (resolving its exports map, reading
 * and compiling 60 KB), inside the bundle ~1 ms. Only packages that find no files of their own.
 */
const BUNDLED_PACKAGES = new Set(['lru-cache']);
const isExternal = (id) =>
  !id.startsWith('.') && !id.startsWith('/') && !id.startsWith('\0') && !BUNDLED_PACKAGES.has(id);
const lazyExternals = {
  name: 'lazy-externals',
  resolveId(id, importer) {
    if (!isExternal(id) || importer?.startsWith(EXTERNAL)) return null;
    return EXTERNAL + id;
  },
  load(id) {
    if (!id.startsWith(EXTERNAL)) return null;
    return { code: `module.exports = require(${JSON.stringify(id.slice(EXTERNAL.length))});`, moduleType: 'js' };
  },
};

const entryTime = (await stat(entry)).mtimeMs;
const bundle = await rolldown({
  input: entry,
  platform: 'node',
  // A bare specifier is a package or a node: module; relative and absolute ones are ours.
  external: (id, importer) => isExternal(id) && Boolean(importer?.startsWith(EXTERNAL)),
  plugins: [lazyExternals, ownUrl],
  onLog(level, log) {
    // Anything the bundler warns about may be a behaviour change: the build fails instead.
    throw new Error(`bundling ${relative(root, entry)}: ${level}: ${log.message}`);
  },
});
await bundle.write({
  file: output,
  format: 'cjs',
  codeSplitting: false,
  banner: moduleUrlHelper,
  // Packages loaded on demand (the AWS SDK) by require(): node 20 loses a script's dynamic import()
  // callback once the script comes from a code cache ("A dynamic import callback was not specified").
  dynamicImportInCjs: false,
});
await bundle.close();
// ASCII only: a source with any other character is a two-byte string to V8, which read, checked against
// its code cache and compiled at ~2x the cost (measured: decode 4.5-7 against 6-9.6 ms, compile from the
// cache 3.4-6.7 against 6.7-11 ms). \uXXXX means the same character in strings, regexes, identifiers
// and comments; the bundle has no String.raw, the one place where it would not.
const written = await readFile(output, 'utf8');
if (written.includes('String.raw')) throw new Error(`${output}: String.raw would see \\u escapes literally`);
const code = written.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
if (code !== written) await writeFile(output, code);
if (/\bimport\s*\(/.test(code)) throw new Error(`${output}: a dynamic import() is left, which fails when run from a code cache`);
// bin/cli.cjs runs the bundle only while it is newer than the tsc output it was made from.
if ((await stat(output)).mtimeMs <= entryTime) throw new Error(`${output} is not newer than ${entry}`);
console.log(`bundled ${relative(root, entry)} -> ${relative(root, output)}`);
