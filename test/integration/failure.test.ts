/**
 * Failure injection: each ADD step of macvlan and bridge fails in turn, and afterwards the pod,
 * the node and the IPAM store are as they were before. Real failures where a config can cause
 * one (an unknown IPAM, a duplicate address, a route via an unreachable gateway, a bridge whose
 * gateway address conflicts); the test hook MULTINIC_TEST_FAIL_STEP for the rename and the
 * sysctl, which no config can make fail. ipvlan's cases run in the VM (ipvlan.test.ts).
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { normalize, run, runCnitool, snapshot, useNetnsFixture } from '../helpers/index.js';

const fx = useNetnsFixture({ nics: [{ name: 'eth1', peerAddress: '172.16.0.1/24' }] });

const hostLocal = (extra: Record<string, unknown> = {}) => ({
  type: 'host-local',
  subnet: '172.16.0.0/24',
  rangeStart: '172.16.0.100',
  dataDir: '<tmp>/hl',
  ...extra,
});

const unreachableRoute = { routes: [{ dst: '198.51.100.0/24', gw: '192.0.2.99' }] };
const dupStatic = { type: 'static', addresses: [{ address: '172.16.0.20/24' }, { address: '172.16.0.20/24' }] };

const macvlan = (ipam: object) => ({ type: 'macvlan', master: 'eth1', ipam });
const bridge = (ipam: object, extra: Record<string, unknown> = {}) => ({ type: 'bridge', bridge: 'br-f', isGateway: true, ipMasq: true, ipam, ...extra });

/** The config with '<tmp>' replaced by the test's scratch dir (unknown when the cases are listed). */
function inTmp(plugin: object): object {
  return JSON.parse(JSON.stringify(plugin).replaceAll('<tmp>', fx.tmpDir));
}

function allocations(): string[] {
  const dir = join(fx.tmpDir, 'hl', 'fail');
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d/.test(f)) : [];
}

async function natRules(): Promise<string> {
  const r = await fx.node.exec(['iptables', '-w', '-t', 'nat', '-S']);
  return r.stdout;
}

/**
 * What the kernel derives from a bridge's ports coming and going (carrier, operstate, the MAC
 * and TSO limits it takes from its ports) is not something an ADD leaves behind: dropped.
 */
function withoutCarrier(x: unknown): unknown {
  return JSON.parse(JSON.stringify(x), (key, v) => {
    if (['operstate', 'tso_max_size', 'tso_max_segs', 'gso_max_size', 'gro_max_size', 'address'].includes(key) && typeof v !== 'object') return undefined;
    if (key === 'flags' && Array.isArray(v)) return v.filter((f: string) => !['LOWER_UP', 'NO-CARRIER', 'linkdown'].includes(f));
    return v;
  });
}

async function world() {
  return withoutCarrier({ pod: normalize(await snapshot(fx.pod)), node: normalize(await snapshot(fx.node)), nat: await natRules() });
}

const cases: Array<[string, object, Record<string, string>?, (() => Promise<void>)?]> = [
  ['macvlan: IPAM fails', macvlan({ type: 'no-such-ipam' })],
  ['macvlan: the second address fails after the first took', macvlan(dupStatic)],
  ['macvlan: a route via an unreachable gateway fails after host-local allocated', macvlan(hostLocal(unreachableRoute))],
  ['macvlan: the rename fails', macvlan(hostLocal()), { MULTINIC_TEST_FAIL_STEP: 'rename' }],
  ['macvlan: the sysctl fails', macvlan(hostLocal()), { MULTINIC_TEST_FAIL_STEP: 'sysctl' }],
  ['bridge: IPAM fails after the bridge and the veth pair exist', bridge({ type: 'no-such-ipam' })],
  ['bridge: the second address fails', bridge(dupStatic)],
  ['bridge: a route via an unreachable gateway fails after host-local allocated', bridge(hostLocal(unreachableRoute))],
  ['bridge: the rename fails', bridge(hostLocal()), { MULTINIC_TEST_FAIL_STEP: 'rename' }],
  ['bridge: the sysctl fails', bridge(hostLocal()), { MULTINIC_TEST_FAIL_STEP: 'sysctl' }],
  [
    'bridge: an existing bridge whose address conflicts with the gateway (no forceAddress)',
    bridge(hostLocal()),
    {},
    async () => {
      await fx.node.ip('link', 'add', 'br-f', 'type', 'bridge');
      await fx.node.ip('addr', 'add', '172.16.0.77/24', 'dev', 'br-f');
      await fx.node.ip('link', 'set', 'br-f', 'up');
    },
  ],
];

describe('a failed ADD leaves no link, address, route, rule, NAT rule or allocation', () => {
  it.each(cases)('%s', async (_name, plugin, env = {}, prepare) => {
    await prepare?.();
    const before = await world();
    const conf = { cniVersion: '1.0.0', name: 'fail', plugins: [inTmp(plugin)] };
    const add = await runCnitool({ command: 'add', netName: 'fail', confs: [conf], node: fx.node, netns: fx.pod, ifName: 'net1', containerId: 'f1', env });
    expect(add.exitCode, 'ADD should have failed').not.toBe(0);
    expect(await world()).toEqual(before);
    expect(allocations()).toEqual([]);
    // DEL after the failed ADD (a runtime does this) is still fine, unless the IPAM plugin
    // does not exist at all: that is a real error for DEL too.
    if (JSON.stringify(plugin).includes('no-such-ipam')) return;
    const del = await runCnitool({ command: 'del', netName: 'fail', confs: [conf], node: fx.node, netns: fx.pod, ifName: 'net1', containerId: 'f1' });
    expect(del.exitCode, del.stderr).toBe(0);
  });
});

describe('DEL', () => {
  it.each([['macvlan', macvlan(hostLocal())], ['bridge', bridge(hostLocal())]])(
    '%s: idempotent, succeeds when the link or the netns is gone, and releases the allocation',
    async (_name, template) => {
      const plugin = inTmp(template);
      const conf = { cniVersion: '1.0.0', name: 'fail', plugins: [plugin] };
      const base = { netName: 'fail', confs: [conf], node: fx.node, ifName: 'net1', containerId: 'd1' } as const;
      expect((await runCnitool({ ...base, command: 'add', netns: fx.pod })).exitCode).toBe(0);
      expect(allocations()).toHaveLength(1);
      await fx.pod.ip('link', 'del', 'net1');
      expect((await runCnitool({ ...base, command: 'del', netns: fx.pod })).exitCode).toBe(0);
      expect(allocations()).toEqual([]);
      expect((await runCnitool({ ...base, command: 'del', netns: fx.pod })).exitCode).toBe(0);
      // The netns itself gone: DEL run directly (libcni would refuse a missing netns path).
      const path = fx.pod.path;
      await run(['ip', 'netns', 'del', fx.pod.name]);
      const { runPluginDirect, multinicBin } = await import('../helpers/index.js');
      const r = await runPluginDirect(
        multinicBin(),
        { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'd1', CNI_NETNS: path, CNI_IFNAME: 'net1', CNI_PATH: '/usr/lib/cni' },
        { ...plugin, cniVersion: '1.0.0', name: 'fail' },
        { netns: fx.node },
      );
      expect(r.exitCode, r.stdout).toBe(0);
      expect(await natRules()).not.toContain('CNI-');
    },
  );
});
