/**
 * The foundation end to end: the built binary through libcni (build/cnitool) in network
 * namespaces, as kubelet runs it. The node's secondary NIC is the veth `eth1`.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  addressesOf,
  findLink,
  multinicBin,
  routesInTable,
  runCnitool,
  runPluginDirect,
  snapshot,
  useNetnsFixture,
  type NetSnapshot,
} from '../helpers/index.js';

const fx = useNetnsFixture({ nics: [{ name: 'eth1', peerAddress: '172.16.0.1/24' }] });

/** The cluster's primary network, standing in for the cluster CNI: Debian's bridge + host-local. */
function primary(version = '1.0.0') {
  return {
    cniVersion: version,
    name: 'cluster',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni-mn0',
        isGateway: true,
        ipam: { type: 'host-local', subnet: '10.244.1.0/24', dataDir: join(fx.tmpDir, 'host-local') },
      },
    ],
  };
}

function storageMacvlan(version = '1.0.0', extra: Record<string, unknown> = {}) {
  return {
    type: 'macvlan',
    master: 'eth1',
    mode: 'bridge',
    mtu: 1400,
    ipam: {
      type: 'static',
      addresses: [{ address: '172.16.0.10/24', gateway: '172.16.0.1' }],
      routes: [{ dst: '192.168.100.0/24' }],
    },
    ...extra,
  };
}

function metaConf(secondaryPlugins: object[], version = '1.0.0') {
  return {
    cniVersion: version,
    name: 'pods',
    type: 'multinic',
    cniDir: join(fx.tmpDir, 'multinic-cache'),
    delegates: [primary(version), { cniVersion: version, name: 'storage', plugins: secondaryPlugins }],
  };
}

async function podLinkNames(): Promise<string[]> {
  const snap = await snapshot(fx.pod);
  return snap.links.map((l) => l.ifname as string).sort();
}

/** What a failed or rejected call must leave as it was. */
async function worldState(): Promise<{ pod: NetSnapshot; node: string[] }> {
  const node = await snapshot(fx.node);
  return { pod: await snapshot(fx.pod), node: node.links.map((l) => l.ifname as string).sort() };
}

describe('meta-plugin: primary by exec, secondary macvlan + static in process', () => {
  it('ADD gives eth0 and net1 with addresses and routes; CHECK passes; DEL removes both', async () => {
    const conf = metaConf([storageMacvlan()]);
    const add = await runCnitool({ command: 'add', netName: 'pods', confs: [conf], node: fx.node, netns: fx.pod, containerId: 'pod1' });
    expect(add.exitCode, add.stderr).toBe(0);
    // ADD returns the primary's result, as Multus does.
    expect(add.json.ips).toEqual([expect.objectContaining({ address: '10.244.1.2/24', gateway: '10.244.1.1' })]);

    const snap = await snapshot(fx.pod);
    expect(addressesOf(snap, 'eth0')).toContain('10.244.1.2/24');
    const net1 = findLink(snap, 'net1');
    expect(net1).toMatchObject({ mtu: 1400, linkinfo: { info_kind: 'macvlan', info_data: { mode: 'bridge' } } });
    expect(net1!.flags).toContain('UP');
    expect(addressesOf(snap, 'net1', { scope: 'global' })).toEqual(['172.16.0.10/24']);
    const main = routesInTable(snap.routes4, 'main');
    expect(main).toContainEqual(expect.objectContaining({ dst: '192.168.100.0/24', gateway: '172.16.0.1', dev: 'net1' }));
    expect(main).toContainEqual(expect.objectContaining({ dst: '172.16.0.0/24', dev: 'net1' }));

    // The macvlan really is on the node's secondary NIC: the switch answers through it.
    const ping = await fx.pod.exec(['ping', '-c', '1', '-W', '2', '172.16.0.1']);
    expect(ping.exitCode, ping.stdout + ping.stderr).toBe(0);

    const check = await runCnitool({ command: 'check', netName: 'pods', confs: [conf], node: fx.node, netns: fx.pod, containerId: 'pod1' });
    expect(check.exitCode, check.stderr).toBe(0);

    const del = await runCnitool({ command: 'del', netName: 'pods', confs: [conf], node: fx.node, netns: fx.pod, containerId: 'pod1' });
    expect(del.exitCode, del.stderr).toBe(0);
    expect(await podLinkNames()).toEqual(['lo']);
    expect(readdirSync(join(fx.tmpDir, 'multinic-cache'))).toEqual([]);
    // host-local released the primary's address.
    expect(readdirSync(join(fx.tmpDir, 'host-local', 'cluster')).filter((f) => f.startsWith('10.'))).toEqual([]);
  });

  it('CHECK names a link that was changed behind its back', async () => {
    const conf = metaConf([storageMacvlan()]);
    const base = { netName: 'pods', confs: [conf], node: fx.node, netns: fx.pod, containerId: 'pod2' } as const;
    expect((await runCnitool({ ...base, command: 'add' })).exitCode).toBe(0);
    await fx.pod.ip('addr', 'del', '172.16.0.10/24', 'dev', 'net1');
    const check = await runCnitool({ ...base, command: 'check' });
    expect(check.exitCode).not.toBe(0);
    expect(check.stderr + check.stdout).toContain('172.16.0.10/24');
    expect((await runCnitool({ ...base, command: 'del' })).exitCode).toBe(0);
  });

  it('a failing tuning after built-in macvlan rolls back the macvlan, its address and the primary', async () => {
    const conf = metaConf([storageMacvlan(), { type: 'tuning', sysctl: { 'net.ipv4.conf.net1.no_such_sysctl': '1' } }]);
    const add = await runCnitool({ command: 'add', netName: 'pods', confs: [conf], node: fx.node, netns: fx.pod, containerId: 'pod3' });
    expect(add.exitCode).not.toBe(0);
    // The error is tuning's own.
    expect(add.stderr + add.stdout).toContain('no_such_sysctl');
    expect(await podLinkNames()).toEqual(['lo']);
    const snap = await snapshot(fx.pod);
    expect(snap.addrs.flatMap((l) => l.addr_info ?? []).map((a: { local: string }) => a.local)).not.toContain('172.16.0.10');
    expect(readdirSync(join(fx.tmpDir, 'multinic-cache'))).toEqual([]);
    expect(readdirSync(join(fx.tmpDir, 'host-local', 'cluster')).filter((f) => f.startsWith('10.'))).toEqual([]);
  });

  it('a failing secondary IPAM removes the primary and leaves no macvlan', async () => {
    const conf = metaConf([storageMacvlan('1.0.0', { ipam: { type: 'no-such-ipam' } })]);
    const add = await runCnitool({ command: 'add', netName: 'pods', confs: [conf], node: fx.node, netns: fx.pod, containerId: 'pod4' });
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr + add.stdout).toContain('no-such-ipam');
    expect(await podLinkNames()).toEqual(['lo']);
  });

  it('DEL succeeds when the pod netns is already gone', async () => {
    const conf = metaConf([storageMacvlan()]);
    const base = { netName: 'pods', confs: [conf], node: fx.node, containerId: 'pod5' } as const;
    expect((await runCnitool({ ...base, command: 'add', netns: fx.pod })).exitCode).toBe(0);
    const podPath = fx.pod.path;
    await fx.pod.ip('link', 'del', 'net1');
    const del = await runCnitool({ ...base, command: 'del', netns: podPath });
    expect(del.exitCode, del.stderr).toBe(0);
  });
});

describe('built-in macvlan standing alone in a conflist', () => {
  it.each(['0.3.1', '0.4.0', '1.0.0'])('cniVersion %s: result in that version, link and address in the pod', async (version) => {
    const conf = { cniVersion: version, name: 'mv', plugins: [storageMacvlan(version)] };
    const add = await runCnitool({ command: 'add', netName: 'mv', confs: [conf], node: fx.node, netns: fx.pod, ifName: 'net1' });
    expect(add.exitCode, add.stderr).toBe(0);
    expect(add.json.cniVersion).toBe(version);
    const ip = add.json.ips[0];
    expect(ip).toMatchObject({ address: '172.16.0.10/24', gateway: '172.16.0.1', interface: 0 });
    if (version.startsWith('0.')) expect(ip.version).toBe('4');
    else expect(ip.version).toBeUndefined();
    expect(add.json.interfaces[0]).toMatchObject({ name: 'net1', sandbox: fx.pod.path });
    expect(add.json.interfaces[0].mtu).toBeUndefined();
    expect(addressesOf(await snapshot(fx.pod), 'net1', { scope: 'global' })).toEqual(['172.16.0.10/24']);
    expect((await runCnitool({ command: 'del', netName: 'mv', confs: [conf], node: fx.node, netns: fx.pod, ifName: 'net1' })).exitCode).toBe(0);
    expect(await podLinkNames()).toEqual(['lo']);
  });

  it('cniVersion 1.1.0 (run directly: libcni 1.1.2 predates it) carries interface mtu', async () => {
    const env = { CNI_CONTAINERID: 'c11', CNI_NETNS: fx.pod.path, CNI_IFNAME: 'net1', CNI_PATH: '/usr/lib/cni' };
    const conf = { cniVersion: '1.1.0', name: 'mv', ...storageMacvlan('1.1.0') };
    const add = await runPluginDirect(multinicBin(), { ...env, CNI_COMMAND: 'ADD' }, conf, { netns: fx.node, as: 'macvlan' });
    expect(add.exitCode, add.stdout).toBe(0);
    expect(add.json.interfaces[0]).toMatchObject({ name: 'net1', mtu: 1400 });
    const status = await runPluginDirect(multinicBin(), { ...env, CNI_COMMAND: 'STATUS' }, conf, { netns: fx.node, as: 'macvlan' });
    expect(status.exitCode, status.stdout).toBe(0);
    const gc = await runPluginDirect(multinicBin(), { CNI_COMMAND: 'GC', CNI_PATH: '/usr/lib/cni' }, { ...conf, 'cni.dev/valid-attachments': [] }, { netns: fx.node, as: 'macvlan' });
    expect(gc.exitCode, gc.stdout).toBe(0);
    const del = await runPluginDirect(multinicBin(), { ...env, CNI_COMMAND: 'DEL' }, conf, { netns: fx.node, as: 'macvlan' });
    expect(del.exitCode, del.stdout).toBe(0);
    expect(await podLinkNames()).toEqual(['lo']);
  });

  it('an mtu above the master\'s is code 7 naming both values, and nothing is created', async () => {
    const before = await worldState();
    const conf = { cniVersion: '1.0.0', name: 'mv', plugins: [storageMacvlan('1.0.0', { mtu: 9000 })] };
    const add = await runCnitool({ command: 'add', netName: 'mv', confs: [conf], node: fx.node, netns: fx.pod, ifName: 'net1' });
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr).toMatch(/9000/);
    expect(add.stderr).toMatch(/1500/);
    expect(await worldState()).toEqual(before);
  });

  it('a missing master is code 7 naming it', async () => {
    const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: fx.pod.path, CNI_IFNAME: 'net1', CNI_PATH: '/usr/lib/cni' };
    const r = await runPluginDirect(multinicBin(), env, { cniVersion: '1.0.0', name: 'mv', ...storageMacvlan('1.0.0', { master: 'ens999' }) }, { netns: fx.node, as: 'macvlan' });
    expect(r.exitCode).not.toBe(0);
    expect(r.json).toMatchObject({ code: 7 });
    expect(r.json.msg).toContain('ens999');
  });
});

describe('bad input: a CNI error, a non-zero exit, and no change', () => {
  const env = () => ({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'bad1', CNI_NETNS: fx.pod.path, CNI_IFNAME: 'net1', CNI_PATH: '/usr/lib/cni' });

  it('bad JSON on stdin is code 6', async () => {
    const before = await worldState();
    const r = await runPluginDirect(multinicBin(), env(), '{"cniVersion": "1.0.0", "type": ', { netns: fx.node });
    expect(r.exitCode).not.toBe(0);
    expect(r.json).toMatchObject({ code: 6 });
    expect(await worldState()).toEqual(before);
  });

  it('ADD without CNI_CONTAINERID is code 4 naming it', async () => {
    const before = await worldState();
    const { CNI_CONTAINERID: _, ...rest } = env();
    const r = await runPluginDirect(multinicBin(), rest, { cniVersion: '1.0.0', name: 'mv', ...storageMacvlan() }, { netns: fx.node });
    expect(r.exitCode).not.toBe(0);
    expect(r.json).toMatchObject({ code: 4 });
    expect(r.json.msg).toContain('CNI_CONTAINERID');
    expect(await worldState()).toEqual(before);
  });

  it('cniVersion 9.9.9 is code 1', async () => {
    const before = await worldState();
    const r = await runPluginDirect(multinicBin(), env(), { cniVersion: '9.9.9', name: 'mv', ...storageMacvlan() }, { netns: fx.node });
    expect(r.exitCode).not.toBe(0);
    expect(r.json).toMatchObject({ code: 1 });
    expect(await worldState()).toEqual(before);
  });

  it('an unknown type run as multinic is code 7 naming it', async () => {
    const r = await runPluginDirect(multinicBin(), env(), { cniVersion: '1.0.0', name: 'x', type: 'flannel-ish' }, { netns: fx.node });
    expect(r.json).toMatchObject({ code: 7 });
    expect(r.json.msg).toContain('flannel-ish');
  });

  it('nothing but the JSON is printed on stdout, and logs go to logFile', async () => {
    const logFile = join(fx.tmpDir, 'multinic.log');
    const conf = { cniVersion: '1.0.0', name: 'mv', logFile, logLevel: 'debug', ...storageMacvlan('1.0.0', { master: 'ens999' }) };
    const r = await runPluginDirect(multinicBin(), env(), conf, { netns: fx.node, as: 'macvlan' });
    expect(() => JSON.parse(r.stdout)).not.toThrow();
    expect(existsSync(logFile)).toBe(true);
  });
});

describe('the binary', () => {
  it('VERSION under env -i lists 0.3.0 through 1.1.0', async () => {
    const r = await runPluginDirect(multinicBin(), { CNI_COMMAND: 'VERSION' });
    expect(r.exitCode).toBe(0);
    expect(r.json.supportedVersions).toEqual(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
  });

  it('without CNI_COMMAND it is a command-line tool', async () => {
    const { run } = await import('../helpers/index.js');
    const r = await run([multinicBin(), 'version'], { env: {} });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('1.1.0');
  });
});
