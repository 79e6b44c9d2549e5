/**
 * Network namespace fixtures.
 *
 * Each test gets its own fake Kubernetes node: a "node" netns whose secondary
 * NIC(s) (eth1, …) are veth ends, the other ends sitting in a "switch" netns,
 * plus a fresh "pod" netns. The CNI plugins run inside the node netns (the
 * driver is started with `ip netns exec <node>`), so nothing ever touches the
 * host's own network.
 *
 * Why veth: this kernel has no dummy, 802.1q vlan or ipvlan link types, and a
 * veth is an ordinary ethernet device that macvlan can sit on. Why a separate
 * switch netns for the peers rather than leaving them in the node: the node
 * then holds only its "real" NICs, like a real node, and the switch end is an
 * L2 neighbour a test can give an address (a gateway) and ping through.
 *
 * Names are `mntest-<pid>-<counter>-<role>`: unique per test, and a crashed
 * run's leftovers are recognisable by their dead pid and swept
 * (`sweepLeftovers`, run by the integration globalSetup and once per process).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { run, runOk, waitFor, type RunOptions, type RunResult } from './exec.js';
import { TEST_PREFIX, isAlive, ownerPid, processTmpRoot, removeProcessTmpRoot, sweepTmpDirs } from './paths.js';

export const NETNS_DIR = '/run/netns';

/** A named network namespace made by the harness. */
export class Netns {
  readonly name: string;

  constructor(name: string) {
    this.name = name;
  }

  /** The bind-mount path, as a runtime passes it in CNI_NETNS. */
  get path(): string {
    return join(NETNS_DIR, this.name);
  }

  /** Runs argv inside this netns (`ip netns exec`); never throws on exit code. */
  exec(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return run(['ip', 'netns', 'exec', this.name, ...argv], opts);
  }

  /** Like exec, but throws on a non-zero exit; returns stdout. */
  execOk(argv: readonly string[], opts?: RunOptions): Promise<string> {
    return runOk(['ip', 'netns', 'exec', this.name, ...argv], opts);
  }

  /** `ip -n <name> …`; throws on failure, returns stdout. */
  ip(...args: string[]): Promise<string> {
    return runOk(['ip', '-n', this.name, ...args]);
  }

  /** `ip -n <name> -j …` parsed. */
  async ipJson<T = any>(...args: string[]): Promise<T> {
    const out = await this.ip('-j', ...args);
    return (out.trim() === '' ? [] : JSON.parse(out)) as T;
  }

  toString(): string {
    return this.name;
  }
}

/** Anything naming a harness netns: the object, its name, or its /run/netns path. */
export type NetnsRef = Netns | string;

export function netnsName(ref: NetnsRef): string {
  if (ref instanceof Netns) return ref.name;
  if (ref.includes('/')) {
    // `ip -n` only takes names, so only paths under /run/netns can be mapped.
    const m = /^\/(?:var\/)?run\/netns\/([^/]+)$/.exec(ref);
    if (!m?.[1]) throw new Error(`not a named netns path: ${ref}`);
    return m[1];
  }
  return ref;
}

export function netnsPath(ref: NetnsRef): string {
  return typeof ref === 'string' && ref.startsWith('/') ? ref : join(NETNS_DIR, netnsName(ref));
}

// ---------------------------------------------------------------------------
// Creation, deletion, sweeping

let counter = 0;
/** Netns created by this process and not yet deleted; see the exit hook below. */
const live = new Set<string>();

/**
 * Last resort: a worker that exits without running afterEach (crash, timeout,
 * bail) must still not leave namespaces behind. Only synchronous work is
 * possible in an exit handler, hence execFileSync.
 */
process.once('exit', () => {
  for (const name of live) {
    try {
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    } catch {
      // nothing more can be done here; the next run's sweep will retry
    }
  }
});

/** Creates a uniquely named netns `mntest-<pid>-<n>-<role>` with lo left as the kernel made it. */
export async function createNetns(role: string): Promise<Netns> {
  counter += 1;
  const name = `${TEST_PREFIX}${process.pid}-${counter}-${role}`;
  await runOk(['ip', 'netns', 'add', name]);
  live.add(name);
  return new Netns(name);
}

/** Deletes a netns (its interfaces die with it); a netns already gone is fine. */
export async function deleteNetns(ref: NetnsRef): Promise<void> {
  const name = netnsName(ref);
  if (existsSync(join(NETNS_DIR, name))) {
    await runOk(['ip', 'netns', 'del', name]);
  }
  live.delete(name);
}

/**
 * Deletes every netns this process created and has not deleted yet (tests
 * that call createNetns/createNode directly and forget), and the scratch dir.
 * Registered as an afterAll of every integration file by setup-file.ts.
 */
export async function releaseProcessResources(): Promise<string[]> {
  const leaked = [...live];
  await Promise.allSettled(leaked.map((name) => deleteNetns(name)));
  removeProcessTmpRoot();
  return leaked;
}

/** Names of all harness-made netns currently on the system (any process). */
export function listTestNetns(): string[] {
  if (!existsSync(NETNS_DIR)) return [];
  return readdirSync(NETNS_DIR).filter((n) => n.startsWith(TEST_PREFIX)).sort();
}

/** Deletes netns and temp dirs left by harness processes that no longer exist. */
export async function sweepLeftovers(): Promise<{ netns: string[]; dirs: string[] }> {
  const netns: string[] = [];
  for (const name of listTestNetns()) {
    const pid = ownerPid(name);
    if (pid === undefined || isAlive(pid)) continue;
    await run(['ip', 'netns', 'del', name]);
    netns.push(name);
  }
  return { netns, dirs: sweepTmpDirs() };
}

let swept: Promise<unknown> | undefined;
function sweepOnce(): Promise<unknown> {
  swept ??= sweepLeftovers();
  return swept;
}

// ---------------------------------------------------------------------------
// The fake node

export interface NicSpec {
  /** Interface name in the node netns. Default eth1, eth2, … by position. */
  name?: string;
  /** CIDR address(es) for the node side, e.g. '192.0.2.10/24'. */
  address?: string | readonly string[];
  /** CIDR address(es) for the switch side (e.g. a gateway to ping). */
  peerAddress?: string | readonly string[];
  mtu?: number;
}

export interface NodeOptions {
  /** Secondary NICs of the node. Default: one, `eth1`, up, no address. */
  nics?: readonly NicSpec[];
  /**
   * Keep IPv6 duplicate address detection in the node and switch netns.
   * Default false: DAD there would only make the harness's own addresses
   * "tentative" for a second or two. The pod netns keeps kernel defaults:
   * what happens there is the product's business.
   */
  nodeDad?: boolean;
}

export interface NodeNic {
  /** Name in the node netns. */
  name: string;
  /** The veth peer's name in the switch netns (`sw-<name>`). */
  peer: string;
}

export interface NodeNetns extends Netns {
  /** Holds the peers of the node's NICs. */
  readonly switchNs: Netns;
  readonly nics: readonly NodeNic[];
}

function list(v: string | readonly string[] | undefined): readonly string[] {
  return v === undefined ? [] : typeof v === 'string' ? [v] : v;
}

async function disableDad(ns: Netns): Promise<void> {
  // Only `default` matters for interfaces created afterwards; `all` for good measure.
  await ns.execOk([
    'sh',
    '-c',
    'echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad && echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad',
  ]);
}

/**
 * Creates a switch netns and a node netns joined by one veth per NIC. The
 * node side is up (with its addresses); lo is up in both, as on a real host.
 * On failure everything created so far is deleted before the error is thrown.
 */
export async function createNode(opts: NodeOptions = {}): Promise<NodeNetns> {
  const made: Netns[] = [];
  try {
    const sw = await createNetns('sw');
    made.push(sw);
    const node = await createNetns('node');
    made.push(node);
    for (const ns of [sw, node]) {
      await ns.ip('link', 'set', 'lo', 'up');
      if (!opts.nodeDad) await disableDad(ns);
    }
    const nics: NodeNic[] = [];
    const specs = opts.nics ?? [{}];
    for (const [i, spec] of specs.entries()) {
      const name = spec.name ?? `eth${i + 1}`;
      const peer = `sw-${name}`.slice(0, 15); // IFNAMSIZ
      await node.ip('link', 'add', name, 'type', 'veth', 'peer', 'name', peer, 'netns', sw.name);
      if (spec.mtu !== undefined) {
        await node.ip('link', 'set', name, 'mtu', String(spec.mtu));
        await sw.ip('link', 'set', peer, 'mtu', String(spec.mtu));
      }
      for (const a of list(spec.address)) await node.ip('addr', 'add', a, 'dev', name);
      for (const a of list(spec.peerAddress)) await sw.ip('addr', 'add', a, 'dev', peer);
      await sw.ip('link', 'set', peer, 'up');
      await node.ip('link', 'set', name, 'up');
      nics.push({ name, peer });
    }
    // Carrier and the IPv6 link-local come up asynchronously after `link set
    // up`; hand tests a node that has settled, or a snapshot taken at once
    // and one taken later would differ for no reason of theirs.
    for (const { name } of nics) await waitLinkSettled(node, name);
    return Object.assign(node, { switchNs: sw, nics }) as NodeNetns;
  } catch (err) {
    await Promise.allSettled(made.map((ns) => deleteNetns(ns)));
    throw err;
  }
}

const IPV6 = existsSync('/proc/sys/net/ipv6');

/**
 * Waits until a link is operationally UP and, where IPv6 is on, has its
 * link-local address, no longer tentative. Useful after a plugin brings a
 * link up too, before snapshotting it.
 */
export async function waitLinkSettled(ns: NetnsRef, ifname: string, timeoutMs = 5_000): Promise<void> {
  const name = netnsName(ns);
  await waitFor(
    `${ifname} in ${name} to be up${IPV6 ? ' with a link-local address' : ''}`,
    async () => {
      const [link] = JSON.parse(await runOk(['ip', '-n', name, '-j', 'addr', 'show', 'dev', ifname])) as Array<{
        operstate?: string;
        addr_info?: Array<{ family: string; scope: string; tentative?: boolean }>;
      }>;
      if (link?.operstate !== 'UP') return false;
      if (!IPV6) return true;
      return (link.addr_info ?? []).some((a) => a.family === 'inet6' && a.scope === 'link' && !a.tentative);
    },
    { timeoutMs },
  );
}

// ---------------------------------------------------------------------------
// Per-test environment

/** One test's world: a node, one or more pods, a scratch dir. */
export class TestEnv {
  readonly node: NodeNetns;
  readonly pod: Netns;
  /** Scratch directory for this test (state dirs, confs…); removed on destroy. */
  readonly tmpDir: string;
  private readonly owned: Netns[];

  private constructor(node: NodeNetns, pod: Netns, tmpDir: string) {
    this.node = node;
    this.pod = pod;
    this.tmpDir = tmpDir;
    this.owned = [pod, node, node.switchNs];
  }

  static async create(opts: NodeOptions = {}): Promise<TestEnv> {
    await sweepOnce();
    const tmpDir = mkdtempSync(join(processTmpRoot(), 'test-'));
    let node: NodeNetns | undefined;
    try {
      node = await createNode(opts);
      const pod = await createNetns('pod');
      return new TestEnv(node, pod, tmpDir);
    } catch (err) {
      if (node) await Promise.allSettled([deleteNetns(node), deleteNetns(node.switchNs)]);
      rmSync(tmpDir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Another pod netns, cleaned up with the rest. */
  async newPod(): Promise<Netns> {
    const pod = await createNetns('pod');
    this.owned.unshift(pod);
    return pod;
  }

  /** All netns this env owns (pods first). */
  get namespaces(): readonly Netns[] {
    return [...this.owned];
  }

  /**
   * Deletes every netns and the scratch dir. Tries all of them even when one
   * fails, then reports every failure at once.
   */
  async destroy(): Promise<void> {
    const results = await Promise.allSettled(this.owned.map((ns) => deleteNetns(ns)));
    rmSync(this.tmpDir, { recursive: true, force: true });
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (errors.length > 0) throw new AggregateError(errors, 'netns cleanup failed');
  }
}

export interface NetnsFixture {
  /** The current test's env; throws outside a test. */
  readonly env: TestEnv;
  readonly node: NodeNetns;
  readonly pod: Netns;
  readonly tmpDir: string;
  newPod(): Promise<Netns>;
}

/**
 * Registers beforeEach/afterEach hooks giving every test of the enclosing
 * describe (or file) a fresh TestEnv, destroyed after the test whether it
 * passed or failed.
 *
 *   const fx = useNetnsFixture({ nics: [{ name: 'eth1', address: '192.0.2.10/24' }] });
 *   it('…', async () => { await runCnitool({ node: fx.node, netns: fx.pod, … }); });
 */
export function useNetnsFixture(opts: NodeOptions = {}): NetnsFixture {
  let current: TestEnv | undefined;
  beforeEach(async () => {
    current = await TestEnv.create(opts);
  });
  afterEach(async () => {
    const env = current;
    current = undefined;
    await env?.destroy();
  });
  const env = (): TestEnv => {
    if (!current) throw new Error('netns fixture used outside a test (or its setup failed)');
    return current;
  };
  return {
    get env() {
      return env();
    },
    get node() {
      return env().node;
    },
    get pod() {
      return env().pod;
    },
    get tmpDir() {
      return env().tmpDir;
    },
    newPod: () => env().newPod(),
  };
}

/** True when a netns of this name exists (by its /run/netns entry). */
export function netnsExists(ref: NetnsRef): boolean {
  return existsSync(join(NETNS_DIR, netnsName(ref)));
}
