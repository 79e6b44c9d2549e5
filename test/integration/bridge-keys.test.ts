/**
 * The bridge keys the differential suite does not cover, on this kernel: macspoofchk,
 * enabledad and forceAddress against Debian's reference plugin (1.1.1 knows them), and the
 * keys it does not know — portIsolation, disableContainerInterface, ipMasqBackend nftables —
 * by what they must do. Where it matters the test sends packets, not just reads config.
 * vlan / vlanTrunk / preserveDefaultVlan need bridge VLAN filtering, which this kernel lacks:
 * they run in the VM (test/kernel/scenarios.sh, judged by ipvlan.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { addressesOf, findLink, normalize, runCnitool, snapshot, useNetnsFixture, waitFor, type Netns } from '../helpers/index.js';

const fx = useNetnsFixture({ nics: [{ name: 'eth1', address: '172.16.0.2/24', peerAddress: '172.16.0.1/24' }] });

type Plugin = Record<string, unknown>;

function conf(plugin: Plugin) {
  return { cniVersion: '1.0.0', name: 'keys', plugins: [plugin] };
}

async function cni(command: 'add' | 'del' | 'check', plugin: Plugin, pod: Netns, opts: { ref?: boolean; containerId?: string } = {}) {
  return runCnitool({
    command,
    netName: 'keys',
    confs: [conf(plugin)],
    node: fx.node,
    netns: pod,
    ifName: 'net1',
    containerId: opts.containerId ?? (opts.ref ? 'ref1' : 'ours1'),
    bin: opts.ref ? null : undefined,
  });
}

async function addOk(plugin: Plugin, pod: Netns, opts: { ref?: boolean; containerId?: string } = {}) {
  const r = await cni('add', plugin, pod, opts);
  expect(r.exitCode, `${opts.ref ? 'reference' : 'multinic'} ADD: ${r.stderr}`).toBe(0);
  return r;
}

async function delOk(plugin: Plugin, pod: Netns, opts: { ref?: boolean; containerId?: string } = {}) {
  const r = await cni('del', plugin, pod, opts);
  expect(r.exitCode, `${opts.ref ? 'reference' : 'multinic'} DEL: ${r.stderr}`).toBe(0);
}

async function pings(from: Netns, to: string): Promise<boolean> {
  const r = await from.exec(['ping', '-c', '1', '-W', '1', to]);
  return r.exitCode === 0;
}

const staticIpam = (address: string, extra: Plugin = {}) => ({ type: 'static', addresses: [{ address }], ...extra });

async function nftRuleset(): Promise<string> {
  return (await fx.node.exec(['nft', 'list', 'ruleset'])).stdout;
}

const delBridge = (name: string) => fx.node.ip('link', 'del', name).catch(() => undefined);

describe('macspoofchk: frames with another source MAC are dropped, as by the reference', () => {
  it.each([false, true])('reference=%s', async (ref) => {
    const br = ref ? 'br-sr' : 'br-so';
    const plugin = { type: 'bridge', bridge: br, isGateway: true, macspoofchk: true, ipam: staticIpam('10.23.0.10/24') };
    await addOk(plugin, fx.pod, { ref });
    expect(await pings(fx.pod, '10.23.0.1')).toBe(true);
    // The pod takes another MAC: its frames (ARP included) no longer pass the bridge port.
    await fx.pod.ip('link', 'set', 'net1', 'address', '02:de:ad:be:ef:01');
    await fx.node.ip('neigh', 'flush', 'dev', br).catch(() => undefined);
    await fx.pod.ip('neigh', 'flush', 'dev', 'net1').catch(() => undefined);
    expect(await pings(fx.pod, '10.23.0.1')).toBe(false);
    const containerId = ref ? 'ref1' : 'ours1';
    expect(await nftRuleset()).toContain(containerId);
    await delOk(plugin, fx.pod, { ref });
    // The rule (and for the reference its per-port chain) goes with DEL.
    expect(await nftRuleset()).not.toContain(containerId);
    await delBridge(br);
  });
});

describe('enabledad: the pod interface\'s DAD sysctls and settled state as the reference\'s', () => {
  async function outcome(enabledad: boolean, ref: boolean, pod: Netns) {
    const br = `br-e${enabledad ? 1 : 0}${ref ? 'r' : 'o'}`;
    const plugin = { type: 'bridge', bridge: br, enabledad, ipam: staticIpam('2001:db8:5::10/64') };
    const add = await addOk(plugin, pod, { ref });
    const sysctl = async (key: string) => (await pod.execOk(['cat', `/proc/sys/net/ipv6/conf/net1/${key}`])).trim();
    const dad = { accept_dad: await sysctl('accept_dad'), enhanced_dad: await sysctl('enhanced_dad') };
    await waitFor('DAD over', async () => (await pod.ip('-6', 'addr', 'show', 'tentative')).trim() === '', { timeoutMs: 10_000 });
    const snap = await snapshot(pod);
    const addrs = addressesOf(snap, 'net1', { scope: 'global' });
    const flags = JSON.stringify(snap.addrs);
    await delOk(plugin, pod, { ref });
    await delBridge(br);
    return { dad, addrs, dadfailed: flags.includes('dadfailed'), ips: (add.json as any).ips };
  }

  it.each([false, true])('enabledad=%s', async (enabledad) => {
    const ours = await outcome(enabledad, false, fx.pod);
    const ref = await outcome(enabledad, true, await fx.newPod());
    expect(ours).toEqual(ref);
    expect(ours.dad.accept_dad).toBe(enabledad ? '1' : '0');
    expect(ours.addrs).toEqual(['2001:db8:5::10/64']);
  });
});

describe('forceAddress: a gateway address on an existing bridge is replaced, as by the reference', () => {
  async function outcome(forceAddress: boolean, ref: boolean, pod: Netns) {
    const br = ref ? 'br-far' : 'br-fao';
    await fx.node.ip('link', 'add', br, 'type', 'bridge');
    await fx.node.ip('addr', 'add', '10.24.0.77/24', 'dev', br);
    await fx.node.ip('link', 'set', br, 'up');
    const plugin = { type: 'bridge', bridge: br, isGateway: true, forceAddress, ipam: staticIpam('10.24.0.10/24') };
    const add = await cni('add', plugin, pod, { ref });
    const bridgeAddrs = addressesOf(await snapshot(fx.node), br, { family: 4 });
    const podLinks = (await snapshot(pod)).links.map((l) => l.ifname as string).sort();
    if (add.exitCode === 0) await delOk(plugin, pod, { ref });
    await delBridge(br);
    return { ok: add.exitCode === 0, bridgeAddrs, podLinks };
  }

  it.each([true, false])('forceAddress=%s', async (forceAddress) => {
    const ours = await outcome(forceAddress, false, fx.pod);
    const ref = await outcome(forceAddress, true, await fx.newPod());
    if (forceAddress) {
      expect(ours).toEqual({ ok: true, bridgeAddrs: ['10.24.0.1/24'], podLinks: ['lo', 'net1'] });
      expect(ref).toEqual(ours);
    } else {
      // Both refuse and keep the address; ours also removes the pod's interface (the reference leaves it).
      expect(ours).toEqual({ ok: false, bridgeAddrs: ['10.24.0.77/24'], podLinks: ['lo'] });
      expect(ref).toMatchObject({ ok: false, bridgeAddrs: ['10.24.0.77/24'] });
    }
  });
});

describe('portIsolation (not in reference 1.1.1)', () => {
  it('isolated ports reach the gateway and non-isolated ports, not each other', async () => {
    const isolated = { type: 'bridge', bridge: 'br-pi', isGateway: true, portIsolation: true };
    const a = fx.pod;
    const b = await fx.newPod();
    const c = await fx.newPod();
    await addOk({ ...isolated, ipam: staticIpam('10.26.0.10/24') }, a, { containerId: 'pa' });
    await addOk({ ...isolated, ipam: staticIpam('10.26.0.11/24') }, b, { containerId: 'pb' });
    const open = { type: 'bridge', bridge: 'br-pi', isGateway: true, ipam: staticIpam('10.26.0.12/24') };
    const addC = await addOk(open, c, { containerId: 'pc' });
    const node = await snapshot(fx.node);
    const ports = node.links.filter((l) => l.master === 'br-pi');
    const flag = (name: string) => (findLink(node, name) as any).linkinfo.info_slave_data.isolated;
    const hostEndOfC = (addC.json as any).interfaces[1].name as string;
    expect(ports).toHaveLength(3);
    for (const p of ports) expect(flag(p.ifname as string)).toBe(p.ifname !== hostEndOfC);
    expect(await pings(a, '10.26.0.1')).toBe(true);
    expect(await pings(a, '10.26.0.12')).toBe(true);
    expect(await pings(a, '10.26.0.11')).toBe(false);
    await delOk(open, c, { containerId: 'pc' });
    await delOk({ ...isolated, ipam: staticIpam('10.26.0.11/24') }, b, { containerId: 'pb' });
    await delOk({ ...isolated, ipam: staticIpam('10.26.0.10/24') }, a, { containerId: 'pa' });
    await delBridge('br-pi');
  });
});

describe('disableContainerInterface (not in reference 1.1.1)', () => {
  it('an L2 port whose pod end stays down; CHECK and DEL work', async () => {
    const plugin = { type: 'bridge', bridge: 'br-dc', disableContainerInterface: true, ipam: {} };
    const add = await addOk(plugin, fx.pod);
    const pod = await snapshot(fx.pod);
    const net1 = findLink(pod, 'net1') as any;
    expect(net1.flags).not.toContain('UP');
    expect(addressesOf(pod, 'net1', { scope: 'global' })).toEqual([]);
    expect((add.json as any).ips).toBeUndefined();
    // The node end is a port of the bridge and up, ready for whoever brings the pod end up.
    const hostEnd = (add.json as any).interfaces[1].name as string;
    expect(findLink(await snapshot(fx.node), hostEnd)).toMatchObject({ master: 'br-dc', flags: expect.arrayContaining(['UP']) });
    const check = await cni('check', plugin, fx.pod);
    expect(check.exitCode, check.stderr).toBe(0);
    await delOk(plugin, fx.pod);
    expect((await snapshot(fx.pod)).links.map((l) => l.ifname)).toEqual(['lo']);
    await delBridge('br-dc');
  });

  it('with an IPAM is code 7 naming the key, as in later reference releases, and nothing is made', async () => {
    const before = normalize(await snapshot(fx.node));
    const plugin = { type: 'bridge', bridge: 'br-dc', disableContainerInterface: true, ipam: staticIpam('10.27.0.10/24') };
    const add = await cni('add', plugin, fx.pod);
    expect(add.exitCode).not.toBe(0);
    expect(add.json).toMatchObject({ code: 7 });
    expect((add.json as any).msg).toContain('disableContainerInterface');
    expect(normalize(await snapshot(fx.node))).toEqual(before);
    expect((await snapshot(fx.pod)).links.map((l) => l.ifname)).toEqual(['lo']);
  });
});

describe('ipMasqBackend nftables (ours)', () => {
  it('masquerades the pod towards the outside in table inet multinic_masq, and DEL removes its chain', async () => {
    const plugin = { type: 'bridge', bridge: 'br-nm', isDefaultGateway: true, ipMasq: true, ipMasqBackend: 'nftables', ipam: staticIpam('10.25.0.10/24') };
    const iptablesBefore = (await fx.node.exec(['iptables', '-w', '-t', 'nat', '-S'])).stdout;
    await addOk(plugin, fx.pod);
    const table = (await fx.node.execOk(['nft', 'list', 'table', 'inet', 'multinic_masq'])).replace(/\s+/g, ' ');
    expect(table).toMatch(/ip saddr 10\.25\.0\.10 jump CNI-[0-9a-f]{24} comment "name: keys id: ours1"/);
    expect(table).toContain('ip daddr 10.25.0.0/24 accept');
    expect(table).toContain('ip daddr != 224.0.0.0/4 masquerade');
    expect((await fx.node.exec(['iptables', '-w', '-t', 'nat', '-S'])).stdout).toBe(iptablesBefore);
    // The switch has no route back to 10.25.0.0/24: only a masqueraded ping comes back.
    expect(await pings(fx.pod, '172.16.0.1')).toBe(true);
    await delOk(plugin, fx.pod);
    const after = await fx.node.execOk(['nft', 'list', 'table', 'inet', 'multinic_masq']);
    expect(after).not.toContain('CNI-');
    // DEL again (the runtime retries) is fine.
    await delOk(plugin, fx.pod);
    await delBridge('br-nm');
  });

  it('without masquerade the same ping gets no answer (the check above is not vacuous)', async () => {
    const plugin = { type: 'bridge', bridge: 'br-nn', isDefaultGateway: true, ipam: staticIpam('10.25.1.10/24') };
    await addOk(plugin, fx.pod);
    expect(await pings(fx.pod, '172.16.0.1')).toBe(false);
    await delOk(plugin, fx.pod);
    await delBridge('br-nn');
  });
});
