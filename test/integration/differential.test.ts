/**
 * Differential: the same config through Debian's reference plugin and through multinic, each
 * on a fresh pod of the same node, one after the other; the pod's and the node's `ip -j`
 * state and the CNI results must match once what the kernel randomises (MACs, ifindexes,
 * random veth names) is normalised away. ipvlan's differential runs in the VM
 * (ipvlan.test.ts). Intended differences are in docs/differences.md.
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { normalize, runCnitool, snapshot, useNetnsFixture, waitFor, type NetSnapshot, type Netns } from '../helpers/index.js';

const fx = useNetnsFixture({ nics: [{ name: 'eth1', peerAddress: '172.16.0.1/24' }] });

/** Random host-side veth names (ours and the reference's are both veth + 8 hex) and MACs. */
function norm(snap: NetSnapshot, keepMacs = false): unknown {
  const text = JSON.stringify(normalize(snap, { keepMacs })).replace(/veth[0-9a-f]{8}/g, 'veth<x>');
  // iproute2 prints bridge ids without leading zeros (8000.a:f2:…), which the MAC pattern misses.
  return JSON.parse(keepMacs ? text : text.replace(/"8000\.[0-9a-f:]+"/g, '"8000.<mac>"'));
}

function normResult(r: any, keepMacs = false): any {
  let text = JSON.stringify(r).replace(/"sandbox":"[^"]*"/g, '"sandbox":"<netns>"').replace(/veth[0-9a-f]{8}/g, 'veth<x>');
  if (!keepMacs) text = text.replace(/"mac":"[^"]*"/g, '"mac":"<mac>"');
  return JSON.parse(text);
}

interface Outcome {
  result: any;
  pod: unknown;
  node: unknown;
  podAfter: string[];
}

/** ADD (snapshot pod and node), DEL, with the reference plugins (ref) or multinic's. */
async function runOne(plugin: object | ((ref: boolean) => object), ref: boolean, pod: Netns, opts: { keepMacs?: boolean; cleanup?: () => Promise<void> } = {}): Promise<Outcome> {
  const conf = { cniVersion: '1.0.0', name: 'diff', plugins: [typeof plugin === 'function' ? plugin(ref) : plugin] };
  const base = { netName: 'diff', confs: [conf], node: fx.node, netns: pod, ifName: 'net1', containerId: ref ? 'ref1' : 'ours1', bin: ref ? null : undefined } as const;
  const add = await runCnitool({ ...base, command: 'add' });
  expect(add.exitCode, `${ref ? 'reference' : 'multinic'}: ${add.stderr}`).toBe(0);
  // Ours returns once IPv6 DAD is over, the reference (1.1.1) before: compare the settled state.
  await waitFor('DAD over', async () => (await pod.ip('-6', 'addr', 'show', 'tentative')).trim() === '', { timeoutMs: 10_000 });
  const pod1 = norm(await snapshot(pod), opts.keepMacs);
  const node1 = norm(await snapshot(fx.node), opts.keepMacs);
  const del = await runCnitool({ ...base, command: 'del' });
  expect(del.exitCode, del.stderr).toBe(0);
  const after = (await snapshot(pod)).links.map((l) => l.ifname as string).sort();
  await opts.cleanup?.();
  return { result: normResult(add.json, opts.keepMacs), pod: pod1, node: node1, podAfter: after };
}

async function compare(plugin: object | ((ref: boolean) => object), opts: { keepMacs?: boolean; cleanup?: () => Promise<void> } = {}): Promise<void> {
  const ours = await runOne(plugin, false, fx.pod, opts);
  const ref = await runOne(plugin, true, await fx.newPod(), opts);
  expect(ours.pod).toEqual(ref.pod);
  expect(ours.node).toEqual(ref.node);
  expect(ours.result).toEqual(ref.result);
  expect(ours.podAfter).toEqual(['lo']);
  expect(ref.podAfter).toEqual(['lo']);
}

const staticIpam = {
  type: 'static',
  addresses: [{ address: '172.16.0.10/24', gateway: '172.16.0.1' }],
  routes: [{ dst: '198.51.100.0/24' }, { dst: '203.0.113.0/24', gw: '172.16.0.254' }],
};

describe('macvlan: multinic vs the reference plugin', () => {
  it.each(['bridge', 'private', 'vepa', 'passthru'])('mode %s with static IPAM and routes', async (mode) => {
    await compare({ type: 'macvlan', master: 'eth1', mode, ipam: staticIpam });
  });

  it('mtu and mac', async () => {
    await compare({ type: 'macvlan', master: 'eth1', mtu: 1400, mac: '02:11:22:33:44:55', ipam: staticIpam }, { keepMacs: true });
  });

  it('an empty ipam: an L2-only link that is brought up', async () => {
    await compare({ type: 'macvlan', master: 'eth1', ipam: {} });
  });

  it('IPv6 with DAD', async () => {
    await compare({ type: 'macvlan', master: 'eth1', ipam: { type: 'static', addresses: [{ address: '2001:db8::10/64' }] } });
  });
});

describe('bridge: multinic vs the reference plugin', () => {
  const cleanup = (name: string) => async () => {
    await fx.node.ip('link', 'del', name).catch(() => undefined);
  };
  // A store per run, so both get the first address.
  const hostLocal = (ref: boolean) => ({ type: 'host-local', subnet: '10.22.0.0/24', dataDir: join(fx.tmpDir, ref ? 'hl-ref' : 'hl-ours') });

  it('isGateway with host-local', async () => {
    await compare((ref) => ({ type: 'bridge', bridge: 'br-d0', isGateway: true, ipam: hostLocal(ref) }), { cleanup: cleanup('br-d0') });
  });

  it('isDefaultGateway, mtu, hairpinMode', async () => {
    await compare(
      (ref) => ({ type: 'bridge', bridge: 'br-d1', isDefaultGateway: true, mtu: 1400, hairpinMode: true, ipam: hostLocal(ref) }),
      { cleanup: cleanup('br-d1') },
    );
  });

  it('promiscMode, ipMasq, static IPAM with routes', async () => {
    await compare(
      { type: 'bridge', bridge: 'br-d2', isGateway: true, promiscMode: true, ipMasq: true, ipam: staticIpam },
      { cleanup: cleanup('br-d2') },
    );
  });

  it('no IPAM: an L2 port', async () => {
    await compare({ type: 'bridge', bridge: 'br-d3', ipam: {} }, { cleanup: cleanup('br-d3') });
  });
});
