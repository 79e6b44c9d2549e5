/**
 * `multinic install` and `multinic uninstall`: what the DaemonSet does on every node, as the
 * Multus and whereabouts installers do — the binary into the host's CNI bin dir, the
 * meta-plugin's conflist into its conf dir (wrapping the cluster's primary network), a
 * kubeconfig for the service account and the whereabouts flat file.
 *
 * Every file is written to a temporary name in its directory and renamed into place: a
 * runtime exec'ing the binary or reading the conf dir sees the old file or the new one, never a
 * half-written one, and replacing a binary that is running never hits ETXTBSY (the running
 * process keeps the old inode).
 *
 * What was written is recorded in <conf-dir>/multinic.d/installed.json (paths as the host sees
 * them, with their digests), so install is idempotent and uninstall removes exactly that: a
 * file someone changed since is left alone and reported, a plugin we displaced is put back.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { basename, dirname, join, posix } from 'node:path';
import * as sea from 'node:sea';
import { isSupportedVersion, SUPPORTED_VERSIONS } from '../cni/version.js';
import { isRecord } from '../cni/types.js';
import { DEFAULT_CNI_DIR } from '../delegate/multinic.js';
import { builtinTypes } from '../delegate/registry.js';
import type { Argv, CommandModule } from 'yargs';

export const CONFLIST_NAME = '00-multinic.conflist';
export const NETWORK_NAME = 'multinic-cni-network';
/** Our own directory inside the conf dir: libcni reads only files at the top of the conf dir. */
export const STATE_SUBDIR = 'multinic.d';
export const RECORD_NAME = 'installed.json';
export const READY_NAME = 'ready';
export const KUBECONFIG_NAME = 'multinic.kubeconfig';
export const WHEREABOUTS_FLAT_FILE = 'whereabouts.d/whereabouts.conf';
export const DEFAULT_WHEREABOUTS_DATA_DIR = '/var/lib/cni/whereabouts';
export const DEFAULT_SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** The DaemonSet's projected token volume (conf/daemonset.yaml). */
export const DEFAULT_TOKEN_VOLUME = 'multinic-token';
const CONF_EXTENSIONS = ['.conf', '.conflist', '.json'];
const BACKUP_SUFFIX = '.multinic-orig';

export interface InstallOptions {
  /** prefix of every host path: `/` on the node itself, `/host` in the DaemonSet, a temp dir in tests */
  hostRoot: string;
  cniBinDir: string;
  cniConfDir: string;
  /** `auto` (the alphabetically first conf in the conf dir) or a file name in the conf dir */
  primary: string;
  skipConfig: boolean;
  /** the file to install as `multinic`; default: the running binary (or a launcher for the bundle) */
  source?: string | undefined;
  /** rewrite the binary even when the installed one is identical */
  force: boolean;
  /** replace a plugin of a built-in type's name that is not ours (kept, and restored on uninstall) */
  replacePlugins: boolean;
  cniDir: string;
  logFile?: string | undefined;
  logLevel?: string | undefined;
  whereaboutsDataDir: string;
  serviceAccountDir: string;
  /** the token's path as the host sees it; default from POD_UID (the projected volume) */
  tokenFile?: string | undefined;
  kubeletDir: string;
  tokenVolume: string;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
}

export function defaultInstallOptions(overrides: Partial<InstallOptions> = {}): InstallOptions {
  return {
    hostRoot: '/',
    cniBinDir: '/opt/cni/bin',
    cniConfDir: '/etc/cni/net.d',
    primary: 'auto',
    skipConfig: false,
    force: false,
    replacePlugins: false,
    cniDir: DEFAULT_CNI_DIR,
    whereaboutsDataDir: DEFAULT_WHEREABOUTS_DATA_DIR,
    serviceAccountDir: DEFAULT_SERVICE_ACCOUNT_DIR,
    kubeletDir: '/var/lib/kubelet',
    tokenVolume: DEFAULT_TOKEN_VOLUME,
    env: process.env,
    log: (line) => process.stdout.write(line + '\n'),
    ...overrides,
  };
}

export class InstallError extends Error {
  override name = 'InstallError';
}

// ---------------------------------------------------------------------------------------------
// The install record

interface RecordedFile {
  kind: 'file';
  sha256: string;
  size: number;
}
interface RecordedLink {
  kind: 'symlink';
  target: string;
  /** where the foreign file this link displaced was kept */
  backup?: string;
}
type Recorded = RecordedFile | RecordedLink;

export interface InstallRecord {
  version: 1;
  /** host path → what we put there */
  files: Record<string, Recorded>;
  /** directories install created, removed by uninstall when empty */
  dirs: string[];
}

/** Host paths of everything install may write, resolved from the options. */
export function layout(o: Pick<InstallOptions, 'cniBinDir' | 'cniConfDir'>) {
  const state = posix.join(o.cniConfDir, STATE_SUBDIR);
  return {
    binary: posix.join(o.cniBinDir, 'multinic'),
    conflist: posix.join(o.cniConfDir, CONFLIST_NAME),
    stateDir: state,
    record: posix.join(state, RECORD_NAME),
    ready: posix.join(state, READY_NAME),
    kubeconfig: posix.join(state, KUBECONFIG_NAME),
    whereabouts: posix.join(o.cniConfDir, WHEREABOUTS_FLAT_FILE),
  };
}

class Host {
  constructor(readonly root: string) {}

  path(hostPath: string): string {
    return join(this.root, hostPath);
  }
}

function readRecord(host: Host, path: string): InstallRecord {
  try {
    const parsed = JSON.parse(fs.readFileSync(host.path(path), 'utf8')) as unknown;
    if (isRecord(parsed) && parsed.version === 1 && isRecord(parsed.files) && Array.isArray(parsed.dirs)) {
      return parsed as unknown as InstallRecord;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new InstallError(`cannot read the install record ${path}: ${(err as Error).message}`);
    return { version: 1, files: {}, dirs: [] };
  }
  throw new InstallError(`the install record ${path} is not one multinic wrote; move it away to continue`);
}

// ---------------------------------------------------------------------------------------------
// Atomic file operations

function tempName(target: string): string {
  // A dot name without a conf extension: libcni and runtimes never pick it up.
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

function fsyncPath(path: string, flags: string): void {
  const fd = fs.openSync(path, flags);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Writes content to target through a temp file in the same directory, fsync, rename. */
function writeAtomic(target: string, content: Buffer | string, mode: number): void {
  const tmp = tempName(target);
  try {
    fs.writeFileSync(tmp, content, { mode, flag: 'wx' });
    fs.chmodSync(tmp, mode); // the umask may have taken bits off
    fsyncPath(tmp, 'r');
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncPath(dirname(target), 'r');
}

function copyAtomic(source: string, target: string, mode: number): void {
  const tmp = tempName(target);
  try {
    fs.copyFileSync(source, tmp, fs.constants.COPYFILE_EXCL);
    fs.chmodSync(tmp, mode);
    fsyncPath(tmp, 'r');
    fs.renameSync(tmp, target);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncPath(dirname(target), 'r');
}

function symlinkAtomic(linkTarget: string, path: string): void {
  const tmp = tempName(path);
  fs.symlinkSync(linkTarget, tmp);
  try {
    fs.renameSync(tmp, path);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

function digestFile(path: string): { sha256: string; size: number } {
  const h = createHash('sha256');
  const fd = fs.openSync(path, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  let size = 0;
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      size += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return { sha256: h.digest('hex'), size };
}

function digest(content: Buffer | string): { sha256: string; size: number } {
  const buf = typeof content === 'string' ? Buffer.from(content) : content;
  return { sha256: createHash('sha256').update(buf).digest('hex'), size: buf.length };
}

function lstatOrUndefined(path: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Whether the file at path is, byte for byte, what the record says we wrote. */
function matchesRecord(path: string, rec: Recorded, sizeOnly = false): boolean {
  const st = lstatOrUndefined(path);
  if (!st) return false;
  if (rec.kind === 'symlink') return st.isSymbolicLink() && fs.readlinkSync(path) === rec.target;
  if (!st.isFile() || st.size !== rec.size) return false;
  return sizeOnly || digestFile(path).sha256 === rec.sha256;
}

// ---------------------------------------------------------------------------------------------
// Install steps

class Installer {
  readonly host: Host;
  readonly paths: ReturnType<typeof layout>;
  record: InstallRecord;

  constructor(readonly o: InstallOptions) {
    this.host = new Host(o.hostRoot);
    this.paths = layout(o);
    this.record = readRecord(this.host, this.paths.record);
  }

  /** mkdir -p, recording the directories that did not exist. */
  ensureDir(hostDir: string): void {
    const created = fs.mkdirSync(this.host.path(hostDir), { recursive: true, mode: 0o755 });
    if (created === undefined) return;
    // mkdirSync returns the first directory it made; every one below it up to hostDir is new too.
    let dir = hostDir;
    const fresh: string[] = [];
    while (this.host.path(dir).length >= created.length) {
      fresh.push(dir);
      dir = posix.dirname(dir);
      if (dir === '/') break;
    }
    for (const d of fresh.reverse()) if (!this.record.dirs.includes(d)) this.record.dirs.push(d);
  }

  saveRecord(): void {
    this.ensureDir(this.paths.stateDir);
    writeAtomic(this.host.path(this.paths.record), JSON.stringify(this.record, null, 2) + '\n', 0o600);
  }

  /** Writes a small file when its content differs; true when it changed. */
  writeFile(hostPath: string, content: string, mode: number): boolean {
    const d = digest(content);
    const full = this.host.path(hostPath);
    const rec: RecordedFile = { kind: 'file', ...d };
    const same = matchesRecord(full, rec) && (fs.statSync(full).mode & 0o777) === mode;
    this.record.files[hostPath] = rec;
    if (same) return false;
    this.ensureDir(posix.dirname(hostPath));
    this.saveRecord(); // recorded before it exists: a crash in between leaves nothing unaccounted for
    writeAtomic(full, content, mode);
    return true;
  }

  installBinary(): void {
    const target = this.paths.binary;
    const full = this.host.path(target);
    this.ensureDir(this.o.cniBinDir);
    const src = binarySource(this.o.source);
    if (src.kind === 'launcher') {
      if (this.writeFile(target, src.content, 0o755)) this.o.log(`installed ${target} (a launcher for ${src.describe})`);
      else this.o.log(`${target} is up to date`);
      return;
    }
    const existing = lstatOrUndefined(full);
    if (existing?.isFile() && sameFile(src.path, full)) {
      // We are the installed binary (run from the host's bin dir): nothing to copy.
      this.record.files[target] = { kind: 'file', ...digestFile(full) };
      this.o.log(`${target} is the running binary`);
      return;
    }
    const d = digestFile(src.path);
    const rec: RecordedFile = { kind: 'file', ...d };
    if (!this.o.force && existing?.isFile() && matchesRecord(full, rec) && (existing.mode & 0o777) === 0o755) {
      this.record.files[target] = rec;
      this.o.log(`${target} is up to date`);
      return;
    }
    this.record.files[target] = rec;
    this.saveRecord();
    copyAtomic(src.path, full, 0o755);
    this.o.log(`installed ${target} (${d.size} bytes, sha256 ${d.sha256.slice(0, 12)})`);
  }

  /** A symlink `<type> -> multinic` for each built-in type, so other plugins can exec it by type. */
  installPluginLinks(): void {
    for (const type of builtinTypes()) {
      if (type === 'multinic') continue;
      const hostPath = posix.join(this.o.cniBinDir, type);
      const full = this.host.path(hostPath);
      const prior = this.record.files[hostPath];
      const st = lstatOrUndefined(full);
      const ours = st?.isSymbolicLink() && fs.readlinkSync(full) === 'multinic';
      if (ours) {
        this.record.files[hostPath] = prior?.kind === 'symlink' ? prior : { kind: 'symlink', target: 'multinic' };
        continue;
      }
      const rec: RecordedLink = { kind: 'symlink', target: 'multinic' };
      if (st) {
        if (!this.o.replacePlugins) {
          this.o.log(`kept ${hostPath}: it is not ours (multinic runs ${type} in process anyway; --replace-plugins to replace it)`);
          continue;
        }
        rec.backup = posix.join(this.o.cniBinDir, `.${type}${BACKUP_SUFFIX}`);
        this.record.files[hostPath] = rec;
        this.saveRecord();
        fs.renameSync(full, this.host.path(rec.backup));
        this.o.log(`moved the existing ${hostPath} to ${rec.backup}`);
      }
      this.record.files[hostPath] = rec;
      this.saveRecord();
      symlinkAtomic('multinic', full);
      this.o.log(`linked ${hostPath} -> multinic`);
    }
  }

  /**
   * A kubeconfig for the pod's service account, when running in a cluster. The token is named
   * by path (tokenFile), never copied: kubelet rotates the projected token in place and every
   * CNI call reads the current one. Written as JSON (a YAML subset) so the CNI path can read it
   * without a YAML parser.
   */
  installKubeconfig(): boolean {
    const { env } = this.o;
    const host = env.KUBERNETES_SERVICE_HOST;
    if (!host) return false;
    const port = env.KUBERNETES_SERVICE_PORT || '443';
    const caPath = join(this.o.serviceAccountDir, 'ca.crt');
    let ca: Buffer;
    try {
      ca = fs.readFileSync(caPath);
    } catch (err) {
      throw new InstallError(`KUBERNETES_SERVICE_HOST is set but the cluster CA ${caPath} cannot be read: ${(err as Error).message}`);
    }
    const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
    const kubeconfig = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'local', cluster: { server, 'certificate-authority-data': ca.toString('base64') } }],
      users: [{ name: 'multinic', user: { tokenFile: this.tokenFile() } }],
      contexts: [{ name: 'multinic', context: { cluster: 'local', user: 'multinic' } }],
      'current-context': 'multinic',
    };
    if (this.writeFile(this.paths.kubeconfig, JSON.stringify(kubeconfig, null, 2) + '\n', 0o600)) {
      this.o.log(`wrote ${this.paths.kubeconfig} (server ${server}, token ${this.tokenFile()})`);
    }
    return true;
  }

  /** The token's path on the host: the DaemonSet pod's projected volume as kubelet mounts it. */
  tokenFile(): string {
    if (this.o.tokenFile) return this.o.tokenFile;
    const uid = this.o.env.POD_UID;
    if (uid && /^[0-9a-f-]+$/i.test(uid)) {
      return posix.join(this.o.kubeletDir, 'pods', uid, 'volumes', 'kubernetes.io~projected', this.o.tokenVolume, 'token');
    }
    return join(this.o.serviceAccountDir, 'token');
  }

  /** whereabouts' flat file, unless another installer (whereabouts itself) owns it. */
  installWhereaboutsFile(withKubeconfig: boolean): void {
    const hostPath = this.paths.whereabouts;
    const full = this.host.path(hostPath);
    if (lstatOrUndefined(full) && !this.record.files[hostPath]) {
      this.o.log(`kept ${hostPath}: written by someone else (whereabouts?)`);
      return;
    }
    const flat: Record<string, unknown> = { datastore: 'file', data_dir: this.o.whereaboutsDataDir };
    if (withKubeconfig) flat.kubernetes = { kubeconfig: this.paths.kubeconfig };
    if (this.writeFile(hostPath, JSON.stringify(flat, null, 2) + '\n', 0o644)) this.o.log(`wrote ${hostPath}`);
  }

  /** The meta-plugin's conflist around the primary conf; false while there is no primary. */
  installConfList(withKubeconfig: boolean): boolean {
    const primary = findPrimary(this.host.path(this.o.cniConfDir), this.o.primary, this.o.log);
    if (!primary) {
      this.o.log(`no primary network conf in ${this.o.cniConfDir} yet: ${CONFLIST_NAME} not written`);
      return false;
    }
    const conflist = metaConfList(primary, {
      confDir: this.o.cniConfDir,
      binDir: this.o.cniBinDir,
      cniDir: this.o.cniDir,
      kubeconfig: withKubeconfig ? this.paths.kubeconfig : undefined,
      logFile: this.o.logFile,
      logLevel: this.o.logLevel,
    });
    if (this.writeFile(this.paths.conflist, JSON.stringify(conflist, null, 2) + '\n', 0o644)) {
      this.o.log(`wrote ${this.paths.conflist} around ${primary.file} (cniVersion ${String(conflist.cniVersion)})`);
    }
    return true;
  }

  writeReady(): void {
    const full = this.host.path(this.paths.ready);
    if (!lstatOrUndefined(full)) {
      this.writeFile(this.paths.ready, `${new Date().toISOString()}\n`, 0o644);
      this.o.log(`ready: ${this.paths.ready}`);
    } else {
      this.record.files[this.paths.ready] ??= { kind: 'file', ...digestFile(full) };
    }
  }

  clearReady(): void {
    const full = this.host.path(this.paths.ready);
    if (lstatOrUndefined(full)) {
      fs.rmSync(full, { force: true });
      this.o.log(`not ready: removed ${this.paths.ready}`);
    }
    delete this.record.files[this.paths.ready];
  }

  /** One pass: binary, links, kubeconfig, flat file, conflist, readiness. Returns readiness. */
  installAll(): boolean {
    this.installBinary();
    this.installPluginLinks();
    return this.reconcileConfig();
  }

  /** The config part, which watch mode repeats. */
  reconcileConfig(): boolean {
    const withKubeconfig = this.installKubeconfig();
    this.installWhereaboutsFile(withKubeconfig);
    const ready = this.o.skipConfig || this.installConfList(withKubeconfig);
    if (ready) this.writeReady();
    else this.clearReady();
    this.saveRecord();
    return ready;
  }
}

function sameFile(a: string, b: string): boolean {
  try {
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

type BinarySource = { kind: 'file'; path: string } | { kind: 'launcher'; content: string; describe: string };

/**
 * What to install as `multinic`. In the single executable, the running binary itself. Run as
 * `node dist/multinic.cjs`, the bundle needs the node_modules next to it for its native
 * addons, so the host gets a launcher that runs it where it is (for development on the node);
 * `exec -a` keeps the name it was called by, which selects the plugin type.
 */
function binarySource(source: string | undefined): BinarySource {
  if (source) {
    if (!fs.existsSync(source)) throw new InstallError(`--source ${source}: no such file`);
    return { kind: 'file', path: source };
  }
  if (isSea()) return { kind: 'file', path: process.execPath };
  const script = process.argv[1];
  if (!script || !/\.(c?js|mjs)$/.test(script)) {
    throw new InstallError(`cannot tell which file to install (running ${script ?? process.execPath}); pass --source`);
  }
  const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const content = `#!/bin/bash\n# Written by \`multinic install\`: runs the bundle with node, under the name it was called by.\nexec -a "$0" ${q(process.execPath)} ${q(fs.realpathSync(script))} "$@"\n`;
  return { kind: 'launcher', content, describe: `${process.execPath} ${script}` };
}

function isSea(): boolean {
  return typeof sea.isSea === 'function' && sea.isSea();
}

// ---------------------------------------------------------------------------------------------
// The primary network and the meta-plugin's conflist

export interface PrimaryConf {
  /** file name in the conf dir */
  file: string;
  /** the parsed conf or conflist */
  conf: Record<string, unknown>;
}

function isOurs(conf: Record<string, unknown>): boolean {
  if (conf.type === 'multinic') return true;
  return Array.isArray(conf.plugins) && conf.plugins.some((p) => isRecord(p) && p.type === 'multinic');
}

/**
 * The primary network: with `auto`, the conf libcni would pick if we were not there — the
 * first by byte order among *.conf, *.conflist, *.json that parses and is not a multinic conf.
 */
export function findPrimary(confDir: string, primary: string, log: (line: string) => void = () => {}): PrimaryConf | undefined {
  let names: string[];
  if (primary !== 'auto') {
    if (primary.includes('/')) throw new InstallError(`--primary ${primary}: name a file in the conf dir, or auto`);
    names = [primary];
  } else {
    try {
      names = fs
        .readdirSync(confDir)
        .filter((n) => n !== CONFLIST_NAME && !n.startsWith('.') && CONF_EXTENSIONS.some((e) => n.endsWith(e)))
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
  for (const file of names) {
    let conf: unknown;
    try {
      if (!fs.statSync(join(confDir, file)).isFile()) continue;
      conf = JSON.parse(fs.readFileSync(join(confDir, file), 'utf8'));
    } catch (err) {
      if (primary !== 'auto') {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new InstallError(`--primary ${file}: ${(err as Error).message}`);
      }
      log(`skipped ${file}: ${(err as Error).message}`);
      continue;
    }
    if (!isRecord(conf) || (typeof conf.type !== 'string' && !Array.isArray(conf.plugins))) {
      log(`skipped ${file}: neither a conf (type) nor a conflist (plugins)`);
      continue;
    }
    if (isOurs(conf)) continue;
    if (!isSupportedVersion(conf.cniVersion)) {
      throw new InstallError(
        `the primary conf ${file} has cniVersion ${JSON.stringify(conf.cniVersion)}; multinic speaks ${SUPPORTED_VERSIONS.join(', ')}`,
      );
    }
    return { file, conf };
  }
  return undefined;
}

export interface MetaConfOptions {
  confDir: string;
  binDir: string;
  cniDir: string;
  kubeconfig?: string | undefined;
  logFile?: string | undefined;
  logLevel?: string | undefined;
}

/**
 * The meta-plugin's conflist, in the primary's cniVersion. `clusterNetwork` names the primary's
 * file, so a meta-plugin that reads it follows changes by itself; `delegates[0]` embeds the
 * primary as it is now, for a meta-plugin that does not (install rewrites it on change).
 * `capabilities` are the union of the primary's, so the runtime hands us what the primary needs.
 */
export function metaConfList(primary: PrimaryConf, o: MetaConfOptions): { cniVersion: string; name: string; plugins: Record<string, unknown>[] } {
  const cniVersion = String(primary.conf.cniVersion);
  const capabilities: Record<string, boolean> = {};
  const plugins = Array.isArray(primary.conf.plugins) ? primary.conf.plugins : [primary.conf];
  for (const p of plugins) {
    if (!isRecord(p) || !isRecord(p.capabilities)) continue;
    for (const [cap, on] of Object.entries(p.capabilities)) if (on === true) capabilities[cap] = true;
  }
  const plugin: Record<string, unknown> = {
    type: 'multinic',
    clusterNetwork: posix.join(o.confDir, primary.file),
    delegates: [primary.conf],
    cniDir: o.cniDir,
    binDir: o.binDir,
  };
  if (o.kubeconfig) plugin.kubeconfig = o.kubeconfig;
  if (o.logFile) plugin.logFile = o.logFile;
  if (o.logLevel) plugin.logLevel = o.logLevel;
  if (Object.keys(capabilities).length > 0) plugin.capabilities = capabilities;
  return { cniVersion, name: NETWORK_NAME, plugins: [plugin] };
}

// ---------------------------------------------------------------------------------------------
// Entry points

/** One-shot install; true when ready (the conflist is in place, or --skip-config). */
export function install(o: InstallOptions): boolean {
  return new Installer(o).installAll();
}

/**
 * Install, then keep the conflist in step with the primary: on every change in the conf dir
 * (inotify, with a poll as a safety net for filesystems that do not report), until a signal.
 */
export async function installAndWatch(o: InstallOptions, pollMs = 5000, signal?: AbortSignal): Promise<void> {
  const installer = new Installer(o);
  installer.installAll();
  let pending = false;
  const reconcile = () => {
    if (pending) return;
    pending = true;
    // Debounce: a runtime or another installer writes several files in a row.
    setTimeout(() => {
      pending = false;
      try {
        installer.record = readRecord(installer.host, installer.paths.record);
        installer.reconcileConfig();
      } catch (err) {
        o.log(`error: ${(err as Error).message}`);
      }
    }, 200);
  };
  const confDir = installer.host.path(o.cniConfDir);
  let watcher: fs.FSWatcher | undefined;
  try {
    watcher = fs.watch(confDir, { persistent: true }, reconcile);
  } catch (err) {
    o.log(`cannot watch ${o.cniConfDir} (${(err as Error).message}); polling every ${pollMs} ms`);
  }
  const timer = setInterval(reconcile, pollMs);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    if (signal) signal.addEventListener('abort', stop, { once: true });
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  watcher?.close();
  clearInterval(timer);
  o.log('stopped watching; what was installed stays in place');
}

/** Exit status for a readiness probe: the ready file exists and what install wrote is in place. */
export function checkInstalled(o: InstallOptions): string[] {
  const host = new Host(o.hostRoot);
  const paths = layout(o);
  const record = readRecord(host, paths.record);
  const problems: string[] = [];
  if (!lstatOrUndefined(host.path(paths.ready))) problems.push(`${paths.ready} is missing`);
  for (const [path, rec] of Object.entries(record.files)) {
    if (path === paths.ready) continue;
    // The binary is compared by size: hashing it on every probe would cost a second of CPU.
    if (!matchesRecord(host.path(path), rec, path === paths.binary)) problems.push(`${path} is missing or changed`);
  }
  return problems;
}

/** Removes what the record says install wrote, puts back what it displaced. */
export function uninstall(o: InstallOptions): { removed: string[]; kept: string[] } {
  const host = new Host(o.hostRoot);
  const paths = layout(o);
  const record = readRecord(host, paths.record);
  const removed: string[] = [];
  const kept: string[] = [];
  // Readiness first, then the conflist (so the runtime stops calling us), the binary last.
  const rank = (p: string) => (p === paths.ready ? 0 : p === paths.conflist ? 1 : p === paths.binary ? 3 : 2);
  const order = Object.keys(record.files).sort((a, b) => rank(a) - rank(b));
  for (const path of order) {
    const rec = record.files[path]!;
    const full = host.path(path);
    if (!lstatOrUndefined(full)) {
      // already gone
    } else if (path !== paths.ready && !matchesRecord(full, rec)) {
      kept.push(path);
      o.log(`kept ${path}: changed since multinic wrote it`);
      continue;
    } else {
      fs.rmSync(full, { force: true });
      removed.push(path);
      o.log(`removed ${path}`);
    }
    if (rec.kind === 'symlink' && rec.backup && lstatOrUndefined(host.path(rec.backup))) {
      fs.renameSync(host.path(rec.backup), full);
      o.log(`restored ${path}`);
    }
  }
  if (lstatOrUndefined(host.path(paths.record))) {
    fs.rmSync(host.path(paths.record), { force: true });
    removed.push(paths.record);
  }
  // Directories we created, deepest first, when nothing else lives there.
  for (const dir of [...record.dirs].sort((a, b) => b.length - a.length)) {
    try {
      fs.rmdirSync(host.path(dir));
      removed.push(dir);
    } catch {
      // not empty or already gone: leave it
    }
  }
  if (kept.length > 0) {
    // Keep a record of what is still ours-but-changed, so a later uninstall can report it again.
    const rest: InstallRecord = { version: 1, files: Object.fromEntries(kept.map((p) => [p, record.files[p]!])), dirs: [] };
    fs.mkdirSync(host.path(paths.stateDir), { recursive: true });
    writeAtomic(host.path(paths.record), JSON.stringify(rest, null, 2) + '\n', 0o600);
  }
  return { removed, kept };
}

// ---------------------------------------------------------------------------------------------
// Command line

interface InstallArgs {
  'host-root': string;
  'cni-bin-dir': string;
  'cni-conf-dir': string;
  primary: string;
  'skip-config': boolean;
  source?: string | undefined;
  force: boolean;
  'replace-plugins': boolean;
  'cni-dir': string;
  'log-file'?: string | undefined;
  'log-level'?: string | undefined;
  'whereabouts-data-dir': string;
  'service-account-dir': string;
  'token-file'?: string | undefined;
  'kubelet-dir': string;
  'token-volume': string;
  watch: boolean;
  check: boolean;
  'poll-interval': number;
}

/** The options both commands share: where things go on the host. */
function hostOptions<T>(y: Argv<T>) {
  const d = defaultInstallOptions();
  return y
    .option('host-root', { type: 'string', default: d.hostRoot, describe: 'prefix of every host path (the DaemonSet mounts the host at /host)' })
    .option('cni-bin-dir', { type: 'string', default: d.cniBinDir, describe: 'the host directory of CNI plugin binaries' })
    .option('cni-conf-dir', { type: 'string', default: d.cniConfDir, describe: 'the host directory of CNI network confs' });
}

function toOptions(a: InstallArgs): InstallOptions {
  return defaultInstallOptions({
    hostRoot: a['host-root'],
    cniBinDir: a['cni-bin-dir'],
    cniConfDir: a['cni-conf-dir'],
    primary: a.primary,
    skipConfig: a['skip-config'],
    source: a.source,
    force: a.force,
    replacePlugins: a['replace-plugins'],
    cniDir: a['cni-dir'],
    logFile: a['log-file'],
    logLevel: a['log-level'],
    whereaboutsDataDir: a['whereabouts-data-dir'],
    serviceAccountDir: a['service-account-dir'],
    tokenFile: a['token-file'],
    kubeletDir: a['kubelet-dir'],
    tokenVolume: a['token-volume'],
  });
}

function fail(err: unknown): never {
  process.stderr.write(`multinic: ${(err as Error).message}\n`);
  process.exit(1);
}

export const installCommand: CommandModule<object, InstallArgs> = {
  command: 'install',
  describe: 'install multinic on this node: binary, plugin links, conflist, kubeconfig, whereabouts file (the DaemonSet entrypoint)',
  builder: (y) => {
    const d = defaultInstallOptions();
    return hostOptions(y)
      .option('primary', { type: 'string', default: d.primary, describe: 'the cluster network to wrap: auto (the first conf in the conf dir) or a file name there' })
      .option('skip-config', { type: 'boolean', default: false, describe: `do not write ${CONFLIST_NAME}` })
      .option('source', { type: 'string', describe: 'the file to install as multinic (default: this binary)' })
      .option('force', { type: 'boolean', default: false, describe: 'rewrite the binary even if the installed one is identical' })
      .option('replace-plugins', { type: 'boolean', default: false, describe: 'replace plugins named like a built-in type (restored by uninstall)' })
      .option('cni-dir', { type: 'string', default: d.cniDir, describe: "the meta-plugin's cache directory, written into the conf" })
      .option('log-file', { type: 'string', describe: "the meta-plugin's logFile, written into the conf" })
      .option('log-level', { type: 'string', describe: "the meta-plugin's logLevel, written into the conf" })
      .option('whereabouts-data-dir', { type: 'string', default: d.whereaboutsDataDir, describe: 'data_dir in the whereabouts flat file' })
      .option('service-account-dir', { type: 'string', default: d.serviceAccountDir, describe: 'where this pod sees ca.crt and token' })
      .option('token-file', { type: 'string', describe: "the token's path on the host (default: the projected volume of this pod, from POD_UID)" })
      .option('kubelet-dir', { type: 'string', default: d.kubeletDir, describe: "kubelet's root directory on the host" })
      .option('token-volume', { type: 'string', default: d.tokenVolume, describe: 'the name of the projected token volume' })
      .option('watch', { type: 'boolean', default: false, describe: 'stay running and rewrite the conflist when the primary changes' })
      .option('poll-interval', { type: 'number', default: 5, describe: 'watch mode: seconds between checks when inotify says nothing' })
      .option('check', { type: 'boolean', default: false, describe: 'change nothing: exit 0 if installed and ready (a readiness probe)' }) as unknown as Argv<InstallArgs>;
  },
  handler: async (a) => {
    const o = toOptions(a);
    try {
      if (a.check) {
        const problems = checkInstalled(o);
        for (const p of problems) process.stderr.write(`not ready: ${p}\n`);
        process.exit(problems.length === 0 ? 0 : 1);
      }
      if (a.watch) {
        await installAndWatch(o, Math.max(1, a['poll-interval']) * 1000);
        process.exit(0);
      }
      const ready = install(o);
      if (!ready) o.log(`not ready: waiting for a primary network conf (run with --watch to wait for it)`);
    } catch (err) {
      fail(err);
    }
  },
};

export const uninstallCommand: CommandModule<object, InstallArgs> = {
  command: 'uninstall',
  describe: 'remove exactly what install wrote on this node, and put back what it displaced',
  builder: (y) => hostOptions(y) as unknown as Argv<InstallArgs>,
  handler: (a) => {
    try {
      uninstall(toOptions(a));
    } catch (err) {
      fail(err);
    }
  },
};
