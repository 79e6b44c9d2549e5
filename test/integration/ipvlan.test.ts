/**
 * ipvlan and bridge VLANs under a real kernel. This machine's kernel has no ipvlan and no
 * bridge VLAN filtering, so the scenarios run in a VM (Debian's linux-image-amd64 under qemu, see mk/kernel.mk and test/kernel/): the VM runs
 * multinic and the reference ipvlan and bridge plugins and records exit codes, outputs and `ip -j`
 * snapshots; this file boots it once and judges the records here, with the same normaliser as
 * the other differential tests.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/exec.js';
import { addressesOf, findLink, normalize, type NetSnapshot } from '../helpers/snapshot.js';

const KERNEL_DIR = process.env.MULTINIC_KERNEL_DIR ?? resolve('build/kernel');
// The VM runs in a vitest process of its own (`make test-kernel`, a prerequisite of `make test`):
// in the shared integration run, the fork started after a minute of qemu died with EPIPE.
const inKernelRun = process.env.MULTINIC_KERNEL_TEST === '1';

type Records = Map<string, Map<string, string>>;
let records: Records;
let bootSeconds = 0;

function parseRecords(text: string): Records {
  const out: Records = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const m = /^S (\S+) (\S+) ?(.*)$/.exec(line);
    if (!m) continue;
    if (!out.has(m[1]!)) out.set(m[1]!, new Map());
    out.get(m[1]!)!.set(m[2]!, m[3]!);
  }
  return out;
}

function rec(scenario: string, key: string): string {
  const v = records.get(scenario)?.get(key);
  if (v === undefined) throw new Error(`the VM recorded no ${scenario} ${key}`);
  return v;
}
const rc = (s: string, k: string): number => Number(rec(s, `${k}.rc`));
const out = (s: string, k: string): any => JSON.parse(rec(s, `${k}.out`) || 'null');
const why = (s: string, k: string): string => `${rec(s, `${k}.out`)} ${records.get(s)?.get(`${k}.err`) ?? ''}`;

function snap(s: string, prefix: string): NetSnapshot {
  const j = (k: string) => JSON.parse(rec(s, `${prefix}.${k}`) || '[]');
  return { links: j('links'), addrs: j('addrs'), routes4: j('routes4'), routes6: j('routes6'), rules4: j('rules4'), rules6: j('rules6') };
}
const linkNames = (sn: NetSnapshot): string[] => sn.links.map((l) => l.ifname as string).sort();

/** Random host-side veth names (ours and the reference's are both veth + 8 hex) and bridge ids. */
function normVeths(x: unknown): any {
  return JSON.parse(JSON.stringify(x).replace(/veth[0-9a-f]{8}/g, 'veth<x>').replace(/"8000\.[0-9a-f:]+"/g, '"8000.<mac>"'));
}

/** normalize() with veth names replaced, then put back in a canonical order (the names sorted it). */
function normBridgeSnap(sn: NetSnapshot): any {
  const n = normVeths(normalize(sn));
  for (const k of ['links', 'addrs']) n[k].sort((a: unknown, b: unknown) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  return n;
}
const normBridgeResult = (r: any): any => normVeths(JSON.parse(JSON.stringify(normResult(r)).replace(/"mac":"[^"]*"/g, '"mac":"<mac>"')));

interface PortVlans {
  ifname: string;
  vlans: Array<{ vlan: number; vlanEnd?: number; flags?: string[] }>;
}
/** `bridge -j vlan show`, veth names normalised, in name order. */
function vlansOf(s: string, side: string): PortVlans[] {
  const v = normVeths(JSON.parse(rec(s, `${side}.vlans`) || '[]')) as PortVlans[];
  return v.sort((a, b) => a.ifname.localeCompare(b.ifname) || JSON.stringify(a).localeCompare(JSON.stringify(b)));
}
/** The VLAN ids of one port, ranges expanded, each with PVID/U(ntagged) marks. */
function vids(port: PortVlans | undefined): string[] {
  const out: string[] = [];
  for (const v of port?.vlans ?? []) {
    const marks = (v.flags ?? []).map((f) => (f === 'PVID' ? 'P' : f === 'Egress Untagged' ? 'U' : f)).join('');
    for (let id = v.vlan; id <= (v.vlanEnd ?? v.vlan); id++) out.push(marks ? `${id}:${marks}` : `${id}`);
  }
  return out;
}
/** The bridge port that is the node end of the pod's veth (named in the result). */
function podPort(s: string, side: string): PortVlans | undefined {
  const name = out(s, `${side}.add`).interfaces[1].name as string;
  return (JSON.parse(rec(s, `${side}.vlans`)) as PortVlans[]).find((p) => p.ifname === name);
}

/** A CNI result with what differs between two pods (the netns path) replaced. */
function normResult(r: any): any {
  return JSON.parse(JSON.stringify(r).replace(/"sandbox":"[^"]*"/g, '"sandbox":"<netns>"'));
}

beforeAll(async () => {
  if (!inKernelRun) return;
  for (const f of ['vmlinuz', 'initramfs.cpio']) {
    if (!existsSync(join(KERNEL_DIR, f))) throw new Error(`${KERNEL_DIR}/${f} missing: run \`make kernel-initramfs\``);
  }
  const started = Date.now();
  // MULTINIC_KERNEL_REUSE=1: judge the records of the last boot again (while editing this file).
  const reuse = process.env.MULTINIC_KERNEL_REUSE === '1' && existsSync(join(KERNEL_DIR, 'data.txt'));
  const boot = reuse
    ? { exitCode: 0, stderr: '' }
    : await run(['test/kernel/boot.sh', KERNEL_DIR], { timeoutMs: 420_000, env: { ...process.env, MULTINIC_KERNEL_TCG: process.env.MULTINIC_KERNEL_TCG ?? '1' } as Record<string, string> });
  bootSeconds = (Date.now() - started) / 1000;
  const data = existsSync(join(KERNEL_DIR, 'data.txt')) ? readFileSync(join(KERNEL_DIR, 'data.txt'), 'utf8') : '';
  records = parseRecords(data);
  if (!records.get('end')?.get('done')) {
    const consoleLog = existsSync(join(KERNEL_DIR, 'console.log')) ? readFileSync(join(KERNEL_DIR, 'console.log'), 'utf8').slice(-3000) : '';
    throw new Error(`the VM did not finish its scenarios (exit ${boot.exitCode}, ${bootSeconds}s):\n${boot.stderr}\n${consoleLog}`);
  }
}, 480_000);

describe.runIf(inKernelRun)('bridge VLANs in a Debian kernel VM', () => {
  it.each(['bvlan-access', 'bvlan-gw'])('%s: the same pod, node, port VLANs and result as the reference plugin', (s) => {
    expect(rc(s, 'ours.add'), why(s, 'ours.add')).toBe(0);
    expect(rc(s, 'ref.add'), why(s, 'ref.add')).toBe(0);
    expect(normBridgeSnap(snap(s, 'ours'))).toEqual(normBridgeSnap(snap(s, 'ref')));
    expect(normBridgeSnap(snap(s, 'ours.node'))).toEqual(normBridgeSnap(snap(s, 'ref.node')));
    expect(vlansOf(s, 'ours')).toEqual(vlansOf(s, 'ref'));
    expect(normBridgeResult(out(s, 'ours.add'))).toEqual(normBridgeResult(out(s, 'ref.add')));
    // An access port of VLAN 100, untagged, the default VLAN kept (reference 1.1.1 has no preserveDefaultVlan).
    expect(vids(podPort(s, 'ours'))).toEqual(['1:U', '100:PU']);
    expect(findLink(snap(s, 'ours.node'), 'br-v')).toMatchObject({ linkinfo: { info_data: { vlan_filtering: 1 } } });
    expect(rc(s, 'ours.del'), why(s, 'ours.del')).toBe(0);
    expect(JSON.parse(rec(s, 'ours.after')).map((l: any) => l.ifname)).toEqual(['lo']);
  });

  it('isGateway with vlan: the gateway on <bridge>.<vlan>, a veth whose node end is an untagged port of the VLAN', () => {
    const node = snap('bvlan-gw', 'ours.node');
    expect(addressesOf(node, 'br-v.100', { family: 4 })).toEqual(['10.30.0.1/24']);
    expect(addressesOf(node, 'br-v', { family: 4 })).toEqual([]);
    const gwPort = node.links.find((l) => l.master === 'br-v' && l.link === 'br-v.100');
    expect(gwPort).toBeDefined();
    const ports = JSON.parse(rec('bvlan-gw', 'ours.vlans')) as PortVlans[];
    expect(vids(ports.find((p) => p.ifname === gwPort!.ifname))).toEqual(['1:U', '100:PU']);
    expect(out('bvlan-gw', 'ours.add').interfaces.map((i: any) => i.name)).toContain('br-v.100');
  });

  it('preserveDefaultVlan false and vlanTrunk (newer than reference 1.1.1)', () => {
    const s = 'bvlan-newer';
    for (const side of ['access-nodefault', 'trunk', 'trunk-nodefault']) {
      expect(rc(s, `${side}.add`), why(s, `${side}.add`)).toBe(0);
      expect(rc(s, `${side}.del`), why(s, `${side}.del`)).toBe(0);
      expect(JSON.parse(rec(s, `${side}.after`)).map((l: any) => l.ifname)).toEqual(['lo']);
    }
    expect(vids(podPort(s, 'access-nodefault'))).toEqual(['100:PU']);
    // The VLAN gateway's port drops the default VLAN too.
    const node = snap(s, 'access-nodefault.node');
    const gwPort = node.links.find((l) => l.master === 'br-v' && l.link === 'br-v.100');
    const ports = JSON.parse(rec(s, 'access-nodefault.vlans')) as PortVlans[];
    expect(vids(ports.find((p) => p.ifname === gwPort?.ifname))).toEqual(['100:PU']);
    // A trunk port: tagged members, the default VLAN as PVID unless told otherwise.
    expect(vids(podPort(s, 'trunk'))).toEqual(['1:PU', '200', '300', '301', '302']);
    expect(vids(podPort(s, 'trunk-nodefault'))).toEqual(['200', '300', '301', '302']);
    expect(findLink(snap(s, 'trunk.node'), 'br-v')).toMatchObject({ linkinfo: { info_data: { vlan_filtering: 1 } } });
  });

  it('VLANs separate pods on one bridge: VLAN 100 reaches its gateway and its peer, not VLAN 200', () => {
    const s = 'bvlan-ping';
    for (const k of ['a', 'b', 'c']) expect(rc(s, `${k}.add`), why(s, `${k}.add`)).toBe(0);
    expect(rec(s, 'ping.10.31.0.1')).toBe('0');
    expect(rec(s, 'ping.10.31.0.11')).toBe('0');
    expect(rec(s, 'ping.10.31.0.12')).not.toBe('0');
    for (const k of ['a', 'b', 'c']) expect(rc(s, `${k}.del`), why(s, `${k}.del`)).toBe(0);
  });
});

describe.runIf(inKernelRun)('ipvlan in a Debian kernel VM', () => {
  it('the Anthos guide\'s NAD (ipvlan l2 on ens224, whereabouts) gives the pod net1 in l2 mode on the master', () => {
    expect(rc('anthos', 'add'), why('anthos', 'add')).toBe(0);
    const pod = snap('anthos', 'pod');
    const net1 = findLink(pod, 'net1');
    expect(net1).toMatchObject({ linkinfo: { info_kind: 'ipvlan', info_data: { mode: 'l2' } } });
    expect(net1!.link_index).toBe(Number(rec('node', 'ens224.index')));
    expect(net1!.flags).toContain('UP');
    expect(addressesOf(pod, 'net1', { scope: 'global' })).toEqual(['172.16.0.1/24']);
    expect(findLink(pod, 'eth0')).toMatchObject({ linkinfo: { info_kind: 'macvlan' } });
    expect(rc('anthos', 'check'), why('anthos', 'check')).toBe(0);
    expect(rc('anthos', 'del'), why('anthos', 'del')).toBe(0);
    expect(linkNames(snap('anthos', 'after'))).toEqual(['lo']);
  });

  it.each(['l2', 'l3', 'l3s'])('mode %s: the same links, addresses, routes and result as the reference plugin', (mode) => {
    const s = `mode-${mode}`;
    expect(rc(s, 'ours.add'), why(s, 'ours.add')).toBe(0);
    expect(rc(s, 'ref.add'), why(s, 'ref.add')).toBe(0);
    const ours = snap(s, 'ours');
    expect(findLink(ours, 'net1')).toMatchObject({ mtu: 1400, linkinfo: { info_kind: 'ipvlan', info_data: { mode } } });
    expect(normalize(ours)).toEqual(normalize(snap(s, 'ref')));
    expect(normResult(out(s, 'ours.add'))).toEqual(normResult(out(s, 'ref.add')));
    expect(rc(s, 'ours.check'), why(s, 'ours.check')).toBe(0);
    expect(rc(s, 'ours.del'), why(s, 'ours.del')).toBe(0);
    expect(linkNames(snap(s, 'ours.after'))).toEqual(['lo']);
  });

  it('CHECK passes after ADD and names every mismatch; DEL is idempotent and succeeds without the netns', () => {
    expect(rc('check', 'add'), why('check', 'add')).toBe(0);
    expect(rc('check', 'check'), why('check', 'check')).toBe(0);
    expect(rc('check', 'check2')).not.toBe(0);
    const msg = out('check', 'check2').msg as string;
    expect(msg).toContain('mtu is 1300');
    expect(msg).toContain('address 172.16.1.11/24 is missing');
    expect(rc('check', 'del')).toBe(0);
    expect(rc('check', 'del2')).toBe(0);
    expect(rc('check', 'del3'), why('check', 'del3')).toBe(0);
  });

  it('chained without master: prevResult\'s single interface on the node is the master, its IPs go on net1, as the reference', () => {
    expect(rc('chained-node', 'ours.add'), why('chained-node', 'ours.add')).toBe(0);
    expect(rc('chained-node', 'ref.add'), why('chained-node', 'ref.add')).toBe(0);
    const ours = snap('chained-node', 'ours');
    expect(findLink(ours, 'net1')!.link_index).toBe(Number(rec('node', 'ens224.index')));
    expect(addressesOf(ours, 'net1', { scope: 'global' })).toEqual(['172.16.2.5/24']);
    expect(normalize(ours)).toEqual(normalize(snap('chained-node', 'ref')));
    expect(normResult(out('chained-node', 'ours.add'))).toEqual(normResult(out('chained-node', 'ref.add')));
  });

  it('chained without master: a prevResult interface in the pod is used there (the reference looks on the node)', () => {
    expect(rc('chained-pod', 'add'), why('chained-pod', 'add')).toBe(0);
    const pod = snap('chained-pod', 'pod');
    const net1 = findLink(pod, 'net1');
    expect(net1).toMatchObject({ link: 'eth0', linkinfo: { info_kind: 'ipvlan', info_data: { mode: 'l3' } } });
    expect(addressesOf(pod, 'net1', { scope: 'global' })).toEqual(['10.77.0.5/24']);
    expect(rc('chained-pod', 'del')).toBe(0);
    expect(linkNames(snap('chained-pod', 'after'))).toEqual(['eth0', 'lo']);
  });

  it('an MTU above the master\'s is code 7 naming both values, and nothing is created', () => {
    expect(rc('mtu', 'add')).not.toBe(0);
    expect(out('mtu', 'add')).toMatchObject({ code: 7 });
    expect(out('mtu', 'add').msg).toMatch(/9000.*1500/);
    expect(linkNames(snap('mtu', 'pod'))).toEqual(['lo']);
  });

  it('a route via an unreachable gateway or a duplicate address leaves no link and no allocation', () => {
    expect(rc('failure', 'bad.add')).not.toBe(0);
    expect(out('failure', 'bad.add').msg).toContain('ENETUNREACH');
    expect(linkNames(snap('failure', 'bad'))).toEqual(['lo']);
    // The allocation of the failed ADD was released: the next pod gets the first address.
    expect(rc('failure', 'good.add'), why('failure', 'good.add')).toBe(0);
    expect(out('failure', 'good.add').ips[0].address).toBe('172.16.9.1/24');
    expect(rc('failure', 'dup.add')).not.toBe(0);
    expect(linkNames(snap('failure', 'dup'))).toEqual(['lo']);
  });

  it('a failed rename, sysctl or IPAM (hook, unknown type, exhausted range) leaves no link, node change or allocation', () => {
    const s = 'failsteps';
    const allocations = (key: string): string[] => {
      const text = rec(s, key);
      return text ? Object.keys(JSON.parse(text).spec?.allocations ?? {}) : [];
    };
    for (const step of ['rename', 'sysctl', 'ipam']) {
      expect(rc(s, `${step}.add`), `${step} should fail`).not.toBe(0);
      expect(out(s, `${step}.add`).msg).toContain(`injected failure at step ${step}`);
      expect(linkNames(snap(s, step)), step).toEqual(['lo']);
      expect(allocations(`${step}.pool`), step).toEqual([]);
    }
    expect(rc(s, 'noipam.add')).not.toBe(0);
    expect(linkNames(snap(s, 'noipam'))).toEqual(['lo']);
    // The range's one address is held by another pod: whereabouts fails, that allocation stays, no other.
    expect(rc(s, 'one.add'), why(s, 'one.add')).toBe(0);
    expect(rc(s, 'full.add')).not.toBe(0);
    expect(linkNames(snap(s, 'full'))).toEqual(['lo']);
    expect(allocations('full.pool')).toHaveLength(1);
    expect(rc(s, 'one.del'), why(s, 'one.del')).toBe(0);
    expect(normalize(snap(s, 'node.after'))).toEqual(normalize(snap(s, 'node.before')));
    expect(rc(s, 'good.add'), why(s, 'good.add')).toBe(0);
    expect(out(s, 'good.add').ips[0].address).toBe('172.16.10.1/24');
    expect(rc(s, 'good.del')).toBe(0);
  });

  it('boots and runs every scenario in bounded time', () => {
    expect(bootSeconds).toBeLessThan(400);
  });
});
