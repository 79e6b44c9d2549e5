/**
 * Native addons in the single binary. Only scripts/build-bundle.mjs refers to this module: it
 * redirects the packages' own loaders here (netlink's `require('node-gyp-build')` and koffi's
 * `require('@koromix/koffi-linux-x64')`). Sources and tests never import it.
 *
 * In the binary (a Node single-executable application) the addons are SEA assets. dlopen(3)
 * needs a file, so on first use each one is written to a private directory named after the
 * addons' content hash, /run/multinic/<hash>/, and loaded from there; later runs find it there.
 * /run is a root-only tmpfs, so no other user can plant a library for us to load, and a
 * reboot clears stale versions. The files are written to a temporary name and renamed into
 * place, so runs racing on the first extraction each see either no file or a complete one.
 *
 * Run as plain `node dist/multinic.cjs`, the bundle is no SEA: the addons are then loaded
 * from node_modules next to the bundle, through the packages' own loaders.
 *
 * Nothing here runs at module evaluation time: an addon is loaded on first use, which keeps
 * the CNI paths that need no addon fast and lets the bundle be captured in a V8 startup
 * snapshot (a snapshot cannot hold a loaded addon).
 */
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

// node:sea and node:module are fetched when used, not imported: Node warns that neither is
// verified to survive in a user-land startup snapshot, and the CNI path needs them only once
// it loads an addon. (process.getBuiltinModule: Node >= 20.16.)
const sea = (): typeof import('node:sea') => process.getBuiltinModule('node:sea');

/** Set by scripts/build-bundle.mjs: sha256 over the embedded addons, shortened. */
declare const MULTINIC_NATIVE_HASH: string;

export type AddonName = 'netlink' | 'koffi';

/** Root of the extraction directories; must be root-owned, 0700, on a root-only filesystem. */
export const RUN_DIR = '/run/multinic';

const loaded = new Map<AddonName, unknown>();
let extractDir: string | undefined;
let tempDir: string | undefined;

/** The exports of a native addon, loaded once. */
export function loadAddon(name: AddonName): unknown {
  let exports = loaded.get(name);
  if (exports === undefined) {
    exports = sea().isSea() ? loadEmbedded(name) : loadFromNodeModules(name);
    loaded.set(name, exports);
  }
  return exports;
}

/**
 * Stands in for `node-gyp-build` inside netlink (dist/raw.js calls it at module load time).
 * The returned binding resolves the addon only when netlink first constructs a socket.
 */
export function nodeGypBuild(_dir: string): { readonly NativeNetlink: unknown } {
  return {
    get NativeNetlink(): unknown {
      return (loadAddon('netlink') as { NativeNetlink: unknown }).NativeNetlink;
    },
  };
}

function loadFromNodeModules(name: AddonName): unknown {
  // createRequire() is opaque to esbuild, so these resolve at run time from the bundle's own
  // location (dist/ -> ../node_modules), exactly as the unbundled packages would.
  const req = process.getBuiltinModule('node:module').createRequire(__filename);
  if (name === 'netlink') {
    const nodeGypBuild = req('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(dirname(req.resolve('netlink/package.json')));
  }
  return req(`@koromix/koffi-${process.platform}-${process.arch}`);
}

function loadEmbedded(name: AddonName): unknown {
  const asset = `${name}.node`; // the SEA asset key, see nativeAddons() in build-bundle.mjs
  const data = sea().getRawAsset(asset);
  if (typeof data === 'string') throw new Error(`SEA asset ${asset} is not binary`);
  const file = materialise(directory(), asset, new Uint8Array(data));
  const mod = { exports: {} as unknown };
  process.dlopen(mod, file);
  if (tempDir !== undefined) {
    // A per-process directory (see directory()): the mapping outlives the file.
    fs.rmSync(file, { force: true });
  }
  return mod.exports;
}

/** The directory to extract into; see the module comment. */
function directory(): string {
  if (extractDir !== undefined) return extractDir;
  if (process.geteuid?.() === 0) {
    // Any problem with /run/multinic (wrong owner or mode, a symlink) is an error, not a
    // reason to fall back somewhere less protected.
    privateDir(RUN_DIR);
    extractDir = privateDir(join(RUN_DIR, MULTINIC_NATIVE_HASH));
  } else {
    // Only root may write /run. Kubelet runs plugins as root; anyone else (a developer trying
    // the CLI) gets a fresh private directory from mkdtemp, which no one else can have
    // prepared, and the files are removed again right after loading.
    tempDir = fs.mkdtempSync(join(tmpdir(), 'multinic-'));
    const dir = tempDir;
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    extractDir = tempDir;
  }
  return extractDir;
}

/** Creates `path` as a 0700 directory, or checks that the existing one is private to us. */
function privateDir(path: string): string {
  try {
    fs.mkdirSync(path, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  // lstat, not stat: a symlink planted at `path` must not redirect us.
  const st = fs.lstatSync(path);
  const euid = process.geteuid?.() ?? -1;
  if (!st.isDirectory() || st.uid !== euid || (st.mode & 0o077) !== 0) {
    throw new Error(
      `refusing to load native code from ${path}: expected a directory owned by uid ${euid} with mode 0700, ` +
        `found ${st.isDirectory() ? 'a directory' : st.isSymbolicLink() ? 'a symlink' : 'a non-directory'} ` +
        `owned by uid ${st.uid} with mode ${(st.mode & 0o7777).toString(8)}`,
    );
  }
  return path;
}

/**
 * Makes `dir/name` hold `data`; returns its path. An existing file of the right size is
 * trusted: the directory name is the content hash and only its owner can write into it.
 */
function materialise(dir: string, name: string, data: Uint8Array): string {
  const final = join(dir, name);
  try {
    const st = fs.lstatSync(final);
    if (st.isFile() && st.size === data.byteLength) return final;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const tmp = join(dir, `.${name}.${process.pid}.${process.hrtime.bigint()}.tmp`);
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
  const fd = fs.openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o500);
  try {
    try {
      fs.writeFileSync(fd, data);
    } finally {
      fs.closeSync(fd);
    }
    // rename(2) is atomic: a concurrent first run loads either our complete file or its own.
    fs.renameSync(tmp, final);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return final;
}
