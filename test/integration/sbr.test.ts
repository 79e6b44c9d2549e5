/**
 * sbr through libcni, against Debian's reference sbr (containernetworking-plugins 1.1.1):
 * the same rules and table contents for a single-IP, a dual-stack and a two-attachment pod;
 * the Anthos guide's layout; and what we do beyond the reference (one batch, rollback, DEL
 * without the link or the netns, CHECK that checks, 1,000 routes).
 */
import { describe, expect, it } from 'vitest';
import {
  type CnitoolOptions,
  type Netns,
  type NetSnapshot,
  cniPathFor,
  multinicBin,
  normalize,
  routesInTable,
  runCnitool,
  runPluginDirect,
  addrs,
  snapshot,
  useNetnsFixture,
  waitFor,
} from '../helpers/index.js';

/** Whose plugins run: all Debian's; Debian's macvlan and static with our sbr; all ours. */
type Impl = 'reference' | 'ours-sbr' | 'ours';
const IMPLS: Record<Impl, Pick<CnitoolOptions, 'bin' | 'aliases'>> = {
  reference: { bin: null },
  'ours-sbr': { aliases: ['sbr'] },
  ours: {},
};

interface Attachment {
  ifName: string;
  addresses: Array<{ address: string; gateway?: string }>;
  routes?: Array<{ dst: string; gw?: string }>;
  sbr?: Record<string, unknown>;
}

function conflist(name: string, a: Attachment): object {
  return {
    cniVersion: '1.0.0',
    name,
    plugins: [
      {
        type: 'macvlan',
        master: 'eth1',
        mode: 'bridge',
        ipam: { type: 'static', addresses: a.addresses, ...(a.routes ? { routes: a.routes } : {}) },
      },
      { type: 'sbr', ...(a.sbr ?? {}) },
    ],
  };
}

/** Rules and routes of every table, normalised: what sbr is about. */
function routing(s: NetSnapshot): Pick<NetSnapshot, 'rules4' | 'rules6' | 'routes4' | 'routes6'> {
  const n = normalize(s);
  return { rules4: n.rules4, rules6: n.rules6, routes4: n.routes4, routes6: n.routes6 };
}

describe('sbr against the reference', () => {
  const fx = useNetnsFixture({ nics: [{ name: 'eth1', peerAddress: ['192.0.2.1/24', '2001:db8::1/64'] }] });

  async function run(impl: Impl, command: 'add' | 'check' | 'del', pod: Netns, net: string, a: Attachment) {
    return runCnitool({ node: fx.node, netns: pod, command, netName: net, confs: [conflist(net, a)], ifName: a.ifName, ...IMPLS[impl] });
  }

  /** ADDs every attachment in `impl`'s pod, snapshots, DELs in reverse; returns the snapshot after ADD. */
  async function scenario(impl: Impl, pod: Netns, atts: Attachment[]): Promise<NetSnapshot> {
    for (const [i, a] of atts.entries()) {
      const r = await run(impl, 'add', pod, `net${i}`, a);
      expect(r.exitCode, `${impl} ADD ${a.ifName}: ${r.stderr}`).toBe(0);
    }
    // IPv6 DAD adds local routes when it ends; how long a chain ran must not show in the tables.
    await waitFor('pod addresses past DAD', async () =>
      (await addrs(pod)).every((l) => (l.addr_info ?? []).every((i: { tentative?: boolean }) => !i.tentative)),
    );
    const snap = await snapshot(pod);
    for (const [i, a] of [...atts.entries()].reverse()) {
      const r = await run(impl, 'del', pod, `net${i}`, a);
      expect(r.exitCode, `${impl} DEL ${a.ifName}: ${r.stderr}`).toBe(0);
    }
    return snap;
  }

  async function differential(atts: Attachment[]): Promise<Record<Impl, NetSnapshot>> {
    const pods = [fx.pod, await fx.newPod(), await fx.newPod()];
    const out = {} as Record<Impl, NetSnapshot>;
    for (const [i, impl] of (['reference', 'ours-sbr', 'ours'] as Impl[]).entries()) {
      out[impl] = await scenario(impl, pods[i]!, atts);
    }
    expect(routing(out['ours-sbr'])).toEqual(routing(out.reference));
    expect(routing(out.ours)).toEqual(routing(out.reference));
    return out;
  }

  it('single IP with a gateway and a static route: same rules and tables', async () => {
    const snaps = await differential([
      { ifName: 'net1', addresses: [{ address: '192.0.2.20/24', gateway: '192.0.2.1' }], routes: [{ dst: '198.51.100.0/24' }] },
    ]);
    const s = snaps.ours;
    expect(s.rules4).toContainEqual(expect.objectContaining({ src: '192.0.2.20', table: '100' }));
    expect(routesInTable(s.routes4, 100)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dst: 'default', gateway: '192.0.2.1', dev: 'net1' }),
        expect.objectContaining({ dst: '192.0.2.0/24', dev: 'net1', prefsrc: '192.0.2.20' }),
        expect.objectContaining({ dst: '198.51.100.0/24', gateway: '192.0.2.1', dev: 'net1' }),
      ]),
    );
    expect(routesInTable(s.routes4, 'main').filter((r) => r.dev === 'net1')).toEqual([]);
  });

  it('dual-stack: one table per IP, same as the reference', async () => {
    const snaps = await differential([
      {
        ifName: 'net1',
        addresses: [
          { address: '192.0.2.21/24', gateway: '192.0.2.1' },
          { address: '2001:db8::21/64', gateway: '2001:db8::1' },
        ],
      },
    ]);
    const s = snaps.ours;
    expect(s.rules4).toContainEqual(expect.objectContaining({ src: '192.0.2.21', table: '100' }));
    expect(s.rules6).toContainEqual(expect.objectContaining({ src: '2001:db8::21', table: '101' }));
    expect(routesInTable(s.routes6, 101)).toContainEqual(expect.objectContaining({ dst: 'default', gateway: '2001:db8::1' }));
  });

  it('two attachments: tables 100 and 101, same as the reference', async () => {
    const snaps = await differential([
      { ifName: 'net1', addresses: [{ address: '192.0.2.22/24', gateway: '192.0.2.1' }] },
      { ifName: 'net2', addresses: [{ address: '192.0.2.23/24', gateway: '192.0.2.1' }] },
    ]);
    const s = snaps.ours;
    expect(s.rules4).toContainEqual(expect.objectContaining({ src: '192.0.2.22', table: '100' }));
    expect(s.rules4).toContainEqual(expect.objectContaining({ src: '192.0.2.23', table: '101' }));
  });
});

describe('sbr beyond the reference', () => {
  const fx = useNetnsFixture({ nics: [{ name: 'eth1', peerAddress: ['192.0.2.1/24'] }] });
  const att: Attachment = { ifName: 'net1', addresses: [{ address: '192.0.2.30/24', gateway: '192.0.2.1' }] };
  const cni = (command: 'add' | 'check' | 'del', a: Attachment = att, pod: Netns = fx.pod, net = 'sbrnet') =>
    runCnitool({ node: fx.node, netns: pod, command, netName: net, confs: [conflist(net, a)], ifName: a.ifName });

  /** Tables other than main, local and default that hold anything. */
  const extraTables = (s: NetSnapshot) =>
    [...s.routes4, ...s.routes6].filter((r) => r.table !== undefined && r.table !== 'local' && r.table !== 'main');
  const extraRules = (s: NetSnapshot) => [...s.rules4, ...s.rules6].filter((r) => r.src !== undefined && r.src !== 'all');

  it("the Anthos guide's layout: main keeps eth0's default, table 100 the secondary one", async () => {
    // eth0: the pod's primary interface, with the cluster's default route.
    await fx.pod.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
    await fx.pod.ip('link', 'set', 'eth0', 'up');
    await fx.pod.ip('link', 'set', 'eth0p', 'up');
    await fx.pod.ip('addr', 'add', '198.51.100.10/32', 'dev', 'eth0');
    await fx.pod.ip('route', 'add', '198.51.100.64', 'dev', 'eth0', 'scope', 'link');
    await fx.pod.ip('route', 'add', 'default', 'via', '198.51.100.64', 'dev', 'eth0');
    const add = await cni('add');
    expect(add.exitCode, add.stderr).toBe(0);
    const s = await snapshot(fx.pod);
    expect(routesInTable(s.routes4, 'main')).toContainEqual(expect.objectContaining({ dst: 'default', gateway: '198.51.100.64', dev: 'eth0' }));
    expect(routesInTable(s.routes4, 100)).toEqual([
      expect.objectContaining({ dst: 'default', gateway: '192.0.2.1', dev: 'net1' }),
      expect.objectContaining({ dst: '192.0.2.0/24', dev: 'net1', protocol: 'kernel', scope: 'link', prefsrc: '192.0.2.30' }),
    ]);
    expect(s.rules4).toContainEqual(expect.objectContaining({ src: '192.0.2.30', table: '100' }));
    // Replies from the net1 address leave through net1, the rest through eth0.
    const viaNet1 = await fx.pod.ip('route', 'get', '203.0.113.9', 'from', '192.0.2.30');
    expect(viaNet1).toMatch(/via 192\.0\.2\.1 dev net1/);
    const viaEth0 = await fx.pod.ip('route', 'get', '203.0.113.9');
    expect(viaEth0).toMatch(/dev eth0/);
    expect((await cni('check')).exitCode).toBe(0);
  });

  it('a 1,000-route attachment is added, checked and deleted with nothing left in any table', async () => {
    const routes = Array.from({ length: 1000 }, (_, i) => ({ dst: `10.${i >> 8}.${i & 255}.0/24` }));
    const a: Attachment = { ...att, routes };
    const before = normalize(await snapshot(fx.pod));
    const add = await cni('add', a);
    expect(add.exitCode, add.stderr).toBe(0);
    const s = await snapshot(fx.pod);
    expect(routesInTable(s.routes4, 100)).toHaveLength(1002);
    expect(routesInTable(s.routes4, 'main')).toEqual([]);
    // The whole chain's CHECK: macvlan finds its routes in sbr's table, sbr its 1,002 routes.
    const check = await cni('check', a);
    expect(check.exitCode, check.stderr + check.stdout).toBe(0);
    const del = await cni('del', a);
    expect(del.exitCode, del.stderr).toBe(0);
    const after = await snapshot(fx.pod);
    expect(extraTables(after)).toEqual([]);
    expect(extraRules(after)).toEqual([]);
    expect(normalize(after)).toEqual(before);
  });

  it('a failure part-way through ADD removes what it added and restores main', async () => {
    // A gateway outside every subnet of net1: the default route of table 100 cannot be added.
    const bad: Attachment = { ...att, sbr: { gateways: ['203.0.113.1'] } };
    const add = await cni('add', bad);
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr + add.stdout).toMatch(/add route 0\.0\.0\.0\/0 via 203\.0\.113\.1/);
    const s = await snapshot(fx.pod);
    expect(extraRules(s)).toEqual([]);
    expect(extraTables(s)).toEqual([]);
    // libcni leaves macvlan's work for the runtime's DEL; sbr put main back as it found it.
    expect(routesInTable(s.routes4, 'main')).toContainEqual(expect.objectContaining({ dst: '192.0.2.0/24', dev: 'net1' }));
  });

  it('CHECK names a missing rule and a missing table route', async () => {
    expect((await cni('add')).exitCode).toBe(0);
    await fx.pod.ip('route', 'del', 'default', 'table', '100');
    let check = await cni('check');
    expect(check.exitCode).not.toBe(0);
    expect(check.stderr + check.stdout).toMatch(/route 0\.0\.0\.0\/0 via 192\.0\.2\.1 dev net1 table 100 is missing/);
    await fx.pod.ip('rule', 'del', 'from', '192.0.2.30', 'lookup', '100');
    check = await cni('check');
    expect(check.stderr + check.stdout).toMatch(/rule from 192\.0\.2\.30\/32 lookup <table> is missing/);
  });

  it('DEL removes the rules and table routes when the link is already gone', async () => {
    const add = await cni('add');
    expect(add.exitCode, add.stderr).toBe(0);
    await fx.pod.ip('link', 'del', 'net1');
    // Our sbr alone, with the cached result as prevResult, as a chain's DEL would run it.
    const conf = { cniVersion: '1.0.0', name: 'sbrnet', type: 'sbr', prevResult: add.json };
    const env = { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_NETNS: fx.pod.path, CNI_IFNAME: 'net1', CNI_PATH: cniPathFor() };
    const del = await runPluginDirect(multinicBin(), env, conf, { netns: fx.node, as: 'sbr' });
    expect(del.exitCode, del.stderr + del.stdout).toBe(0);
    const s = await snapshot(fx.pod);
    expect(extraRules(s)).toEqual([]);
    expect(extraTables(s)).toEqual([]);
  });

  it('DEL succeeds when the netns is gone', async () => {
    const conf = { cniVersion: '1.0.0', name: 'sbrnet', type: 'sbr' };
    const env = { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/mntest-gone', CNI_IFNAME: 'net1', CNI_PATH: cniPathFor() };
    const del = await runPluginDirect(multinicBin(), env, conf, { netns: fx.node, as: 'sbr' });
    expect(del.exitCode, del.stderr + del.stdout).toBe(0);
  });

  it('two attachments added at once get different tables (the netns lock)', async () => {
    const a1: Attachment = { ifName: 'net1', addresses: [{ address: '192.0.2.31/24', gateway: '192.0.2.1' }] };
    const a2: Attachment = { ifName: 'net2', addresses: [{ address: '192.0.2.32/24', gateway: '192.0.2.1' }] };
    const [r1, r2] = await Promise.all([cni('add', a1, fx.pod, 'n1'), cni('add', a2, fx.pod, 'n2')]);
    expect(r1.exitCode, r1.stderr).toBe(0);
    expect(r2.exitCode, r2.stderr).toBe(0);
    const tables = extraRules(await snapshot(fx.pod)).map((r) => r.table).sort();
    expect(tables).toEqual(['100', '101']);
  });

  it('table mode: only rules, routes stay in main; DEL removes the rules', async () => {
    const a: Attachment = { ...att, sbr: { table: 500 } };
    expect((await cni('add', a)).exitCode).toBe(0);
    let s = await snapshot(fx.pod);
    expect(s.rules4).toContainEqual(expect.objectContaining({ src: '192.0.2.30', table: '500' }));
    expect(routesInTable(s.routes4, 'main')).toContainEqual(expect.objectContaining({ dst: '192.0.2.0/24', dev: 'net1' }));
    expect(extraTables(s)).toEqual([]);
    expect((await cni('check', a)).exitCode).toBe(0);
    expect((await cni('del', a)).exitCode).toBe(0);
    s = await snapshot(fx.pod);
    expect(extraRules(s)).toEqual([]);
  });

  it('addSourceHints keeps the subnet route in main with a source hint', async () => {
    const a: Attachment = { ...att, routes: [{ dst: '198.51.100.0/24' }], sbr: { addSourceHints: true } };
    const add = await cni('add', a);
    expect(add.exitCode, add.stderr).toBe(0);
    const s = await snapshot(fx.pod);
    const main = routesInTable(s.routes4, 'main');
    expect(main).toContainEqual(expect.objectContaining({ dst: '192.0.2.0/24', dev: 'net1', prefsrc: '192.0.2.30' }));
    expect(main.filter((r) => r.dst === '198.51.100.0/24')).toEqual([]);
    expect(routesInTable(s.routes4, 100)).toContainEqual(expect.objectContaining({ dst: '198.51.100.0/24', gateway: '192.0.2.1' }));
  });
});
