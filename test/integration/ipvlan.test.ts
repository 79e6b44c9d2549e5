/**
 * ipvlan under a real kernel. This machine's kernel has no ipvlan, so the scenarios run in a
 * VM (Debian's linux-image-amd64 under qemu, see mk/kernel.mk and test/kernel/): the VM runs
 * multinic and the reference ipvlan plugin and records exit codes, outputs and `ip -j`
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
  const boot = await run(['test/kernel/boot.sh', KERNEL_DIR], { timeoutMs: 420_000, env: { ...process.env, MULTINIC_KERNEL_TCG: process.env.MULTINIC_KERNEL_TCG ?? '1' } as Record<string, string> });
  bootSeconds = (Date.now() - started) / 1000;
  const data = existsSync(join(KERNEL_DIR, 'data.txt')) ? readFileSync(join(KERNEL_DIR, 'data.txt'), 'utf8') : '';
  records = parseRecords(data);
  if (!records.get('end')?.get('done')) {
    const consoleLog = existsSync(join(KERNEL_DIR, 'console.log')) ? readFileSync(join(KERNEL_DIR, 'console.log'), 'utf8').slice(-3000) : '';
    throw new Error(`the VM did not finish its scenarios (exit ${boot.exitCode}, ${bootSeconds}s):\n${boot.stderr}\n${consoleLog}`);
  }
}, 480_000);

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

  it('boots and runs every scenario in bounded time', () => {
    expect(bootSeconds).toBeLessThan(400);
  });
});
