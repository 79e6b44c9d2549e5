/**
 * Running CNI: through the libcni driver (build/cnitool) as a runtime would,
 * or by executing a plugin binary directly for what libcni 1.1.2 cannot do
 * (GC, STATUS, hand-made stdin, error paths).
 *
 * Both give children a minimal, explicit environment (PATH plus the CNI
 * variables) so nothing of the test runner's own environment (NODE_OPTIONS,
 * VITEST_*, a stray CNI_*) leaks into the plugin under test.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, tryParseJson, type RunResult } from './exec.js';
import { netnsName, netnsPath, type NetnsRef } from './netns.js';
import { CNITOOL, REFERENCE_CNI_DIR, multinicBin, processTmpRoot } from './paths.js';

/** Plugin types the multinic binary answers to (it dispatches on argv[0]). */
// Only the types built in so far: an alias for a type multinic does not implement would
// shadow the reference plugin of that name in CNI_PATH. Add a type here when it lands.
export const DEFAULT_ALIASES: readonly string[] = ['multinic', 'macvlan', 'ipvlan', 'bridge', 'static', 'sbr', 'whereabouts'];

const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface CniRun extends RunResult {
  /** stdout parsed as JSON (ADD result, or a CNI error object); undefined if not JSON. */
  json: any;
}

export interface PluginDirOptions {
  /** The multinic binary; null for reference plugins only. Default $MULTINIC_BIN / dist/multinic. */
  bin?: string | null;
  /** Names under which `bin` is linked into the plugin dir. Default DEFAULT_ALIASES. */
  aliases?: readonly string[];
  /** Extra plugin dirs, searched first. */
  cniPath?: readonly string[];
}

const pluginDirs = new Map<string, string>();

/**
 * A directory holding symlinks `<alias> -> bin`, made once per (bin, aliases)
 * per process. Symlinks rather than copies: the product dispatches on the
 * name it was invoked as, and a rebuilt binary is picked up at once.
 */
export function pluginDir(bin: string, aliases: readonly string[] = DEFAULT_ALIASES): string {
  if (!existsSync(bin)) {
    throw new Error(`multinic binary not found at ${bin}: run \`make binary\` or set MULTINIC_BIN`);
  }
  const key = JSON.stringify([bin, aliases]);
  let dir = pluginDirs.get(key);
  // The scratch root is removed after each test file; rebuild if it went.
  if (dir === undefined || !existsSync(dir)) {
    const hash = createHash('sha256').update(key).digest('hex').slice(0, 12);
    dir = join(processTmpRoot(), `plugins-${hash}`);
    mkdirSync(dir, { recursive: true });
    for (const alias of aliases) {
      if (!existsSync(join(dir, alias))) symlinkSync(bin, join(dir, alias));
    }
    pluginDirs.set(key, dir);
  }
  return dir;
}

/**
 * The CNI_PATH for a run: extra dirs, then the multinic alias dir (unless
 * bin is null), then Debian's reference plugins. The aliases come before
 * /usr/lib/cni on purpose: `"type": "macvlan"` means multinic's macvlan
 * unless a test asks for the reference one with `bin: null`.
 */
export function cniPathFor(opts: PluginDirOptions = {}): string {
  const dirs = [...(opts.cniPath ?? [])];
  const bin = opts.bin === undefined ? multinicBin() : opts.bin;
  if (bin !== null) dirs.push(pluginDir(bin, opts.aliases));
  dirs.push(REFERENCE_CNI_DIR);
  return dirs.join(':');
}

export interface CnitoolOptions extends PluginDirOptions {
  command: 'add' | 'check' | 'del';
  /** Network name to load from NETCONFPATH (the conf's/conflist's "name"). */
  netName: string;
  /**
   * Network configs written to a fresh NETCONFPATH: an object with a
   * `plugins` array becomes NN-<name>.conflist, anything else NN-<name>.conf.
   */
  confs?: readonly object[];
  /** Files written verbatim (file name -> text, or object to JSON-encode): malformed confs, exact names. */
  confFiles?: Readonly<Record<string, string | object>>;
  /** Use this existing NETCONFPATH instead of writing confs. */
  confDir?: string;
  /** The pod: a harness Netns, its name, or any netns path. */
  netns: NetnsRef;
  /** The node netns the driver (and so every plugin) runs in. */
  node: NetnsRef;
  /** CNI_IFNAME; default eth0. */
  ifName?: string;
  /** CNI_ARGS, as "K=V;K=V" or an object. */
  args?: string | Readonly<Record<string, string>>;
  /** Runtime capability args (runtimeConfig), e.g. { mac: '…', ips: ['…'] }. */
  capArgs?: Readonly<Record<string, unknown>>;
  /** CNI_CONTAINERID; default derived by the driver from the netns path. */
  containerId?: string;
  /**
   * libcni's result cache. Default: one per process under its temp dir, so
   * runs never read or write the host's /var/lib/cni.
   */
  cacheDir?: string;
  /** Extra environment for the driver, inherited by the plugins. */
  env?: Readonly<Record<string, string>>;
  timeoutMs?: number;
}

function writeConfDir(opts: CnitoolOptions): string {
  if (opts.confDir !== undefined) return opts.confDir;
  if (opts.confs === undefined && opts.confFiles === undefined) {
    throw new Error('runCnitool: give confs, confFiles or confDir');
  }
  const dir = mkdtempSync(join(processTmpRoot(), 'netconf-'));
  (opts.confs ?? []).forEach((conf, i) => {
    const c = conf as { name?: unknown; plugins?: unknown };
    const ext = Array.isArray(c.plugins) ? 'conflist' : 'conf';
    const name = typeof c.name === 'string' ? c.name : 'net';
    // Numbered so several confs keep their order (libcni sorts file names).
    const file = `${String(i + 10).padStart(2, '0')}-${name}.${ext}`;
    writeFileSync(join(dir, file), JSON.stringify(conf, null, 2));
  });
  for (const [file, content] of Object.entries(opts.confFiles ?? {})) {
    writeFileSync(join(dir, file), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  }
  return dir;
}

function cniArgsString(args: CnitoolOptions['args']): string | undefined {
  if (args === undefined || typeof args === 'string') return args;
  return Object.entries(args)
    .map(([k, v]) => `${k}=${v}`)
    .join(';');
}

/**
 * Runs `build/cnitool <command> <netName> <pod netns path>` inside the node
 * netns. Never throws on a failed CNI operation: check `exitCode`; on failure
 * `stderr` has the message and `json` the plugin's CNI error object, if any.
 */
export async function runCnitool(opts: CnitoolOptions): Promise<CniRun> {
  if (!existsSync(CNITOOL)) throw new Error(`${CNITOOL} missing: run \`make test-deps\``);
  const cniPath = cniPathFor(opts); // first: it throws when the binary is missing
  const confDir = writeConfDir(opts);
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? BASE_PATH,
    NETCONFPATH: confDir,
    CNI_PATH: cniPath,
    CNI_IFNAME: opts.ifName ?? 'eth0',
    CNI_CACHE_DIR: opts.cacheDir ?? join(processTmpRoot(), 'cni-cache'),
  };
  const cniArgs = cniArgsString(opts.args);
  if (cniArgs !== undefined) env.CNI_ARGS = cniArgs;
  if (opts.capArgs !== undefined) env.CAP_ARGS = JSON.stringify(opts.capArgs);
  if (opts.containerId !== undefined) env.CNI_CONTAINERID = opts.containerId;
  Object.assign(env, opts.env);

  try {
    const r = await run(
      ['ip', 'netns', 'exec', netnsName(opts.node), CNITOOL, opts.command, opts.netName, netnsPath(opts.netns)],
      { env, timeoutMs: opts.timeoutMs ?? 120_000 },
    );
    return { ...r, json: tryParseJson(r.stdout) };
  } finally {
    // A conf dir written here is scratch: confs are rewritten on every call,
    // and libcni caches what CHECK and DEL need from ADD.
    if (opts.confDir === undefined) rmSync(confDir, { recursive: true, force: true });
  }
}

/** The CNI_* variables of a direct plugin run (others may be added freely). */
export interface PluginEnv {
  CNI_COMMAND: 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS' | string;
  CNI_CONTAINERID?: string;
  CNI_NETNS?: string;
  CNI_IFNAME?: string;
  CNI_ARGS?: string;
  CNI_PATH?: string;
  [name: string]: string | undefined;
}

export interface DirectOptions {
  /** Run inside this netns (normally the node's); default: in the test process's netns. */
  netns?: NetnsRef;
  timeoutMs?: number;
  /** argv[0] for the plugin: run it through a symlink of this name (e.g. 'macvlan'). */
  as?: string;
}

/**
 * Executes a plugin binary directly with exactly the given CNI environment
 * (plus PATH) and stdin. stdin: an object is JSON-encoded, a string is sent
 * as-is (for malformed input), undefined sends nothing.
 */
export async function runPluginDirect(
  bin: string,
  cniEnv: PluginEnv,
  stdin?: object | string,
  opts: DirectOptions = {},
): Promise<CniRun> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? BASE_PATH };
  for (const [k, v] of Object.entries(cniEnv)) if (v !== undefined) env[k] = v;
  const exe = opts.as === undefined ? bin : join(pluginDir(bin, [opts.as]), opts.as);
  const argv = opts.netns === undefined ? [exe] : ['ip', 'netns', 'exec', netnsName(opts.netns), exe];
  const input = stdin === undefined ? '' : typeof stdin === 'string' ? stdin : JSON.stringify(stdin);
  const r = await run(argv, { env, input, timeoutMs: opts.timeoutMs ?? 60_000 });
  return { ...r, json: tryParseJson(r.stdout) };
}
