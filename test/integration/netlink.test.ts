/**
 * The netlink layer against the kernel, from inside the test process: links of each kind,
 * moves between namespaces, addresses, routes in any table, rules, sysctls, typed errors.
 */
import { describe, expect, it } from 'vitest';
import { NetlinkError, NetlinkHandle, getSysctl, openNetns, setSysctls } from '../../src/netlink/index.js';
import { addressesOf, findLink, routesInTable, snapshot, useNetnsFixture } from '../helpers/index.js';
import { closeSync } from 'node:fs';

const fx = useNetnsFixture();

async function withHandles<T>(fn: (node: NetlinkHandle, pod: NetlinkHandle, podFd: number) => Promise<T>): Promise<T> {
  const node = NetlinkHandle.inNetnsPath(fx.node.path);
  const podFd = openNetns(fx.pod.path);
  const pod = NetlinkHandle.inNetnsFd(podFd, fx.pod.path);
  try {
    return await fn(node, pod, podFd);
  } finally {
    node.close();
    pod.close();
    closeSync(podFd);
  }
}

describe('netlink layer', () => {
  it('creates a veth with its peer directly in another namespace, renames, sets mtu, mac and up', async () => {
    await withHandles(async (node, pod, podFd) => {
      await node.createLink({ name: 'vhost0', kind: { kind: 'veth', peerName: 'tmpc0', peerNetnsFd: podFd } });
      const peer = await pod.requireLink('tmpc0');
      await pod.renameLink(peer.index, 'eth0');
      await pod.setLinkMtu(peer.index, 1450);
      await pod.setLinkMac(peer.index, '02:00:00:aa:bb:cc');
      await pod.setLinkUp(peer.index);
      const eth0 = await pod.requireLink('eth0');
      expect(eth0).toMatchObject({ kind: 'veth', mtu: 1450, mac: '02:00:00:aa:bb:cc', up: true });
      expect(await node.getLink('vhost0')).toMatchObject({ kind: 'veth' });
    });
    const snap = await snapshot(fx.pod);
    expect(findLink(snap, 'eth0')).toMatchObject({ mtu: 1450, address: '02:00:00:aa:bb:cc' });
  });

  it('creates a bridge, enslaves a link, and moves a link between namespaces', async () => {
    await withHandles(async (node, pod, podFd) => {
      await node.createLink({ name: 'br-test', kind: { kind: 'bridge' }, up: true });
      await node.createLink({ name: 'va', kind: { kind: 'veth', peerName: 'vb' } });
      const br = await node.requireLink('br-test');
      const va = await node.requireLink('va');
      await node.setLinkMaster(va.index, br.index);
      expect((await node.requireLink('va')).masterIndex).toBe(br.index);
      const vb = await node.requireLink('vb');
      await node.moveLinkToNetns(vb.index, podFd);
      expect(await node.getLink('vb')).toBeUndefined();
      expect(await pod.getLink('vb')).toMatchObject({ kind: 'veth' });
    });
  });

  it('adds macvlan on the node NIC into the pod with addresses, routes in any table, and rules', async () => {
    await withHandles(async (node, pod, podFd) => {
      const eth1 = await node.requireLink('eth1');
      await node.createLink({ name: 'mvtmp', kind: { kind: 'macvlan', mode: 'private' }, parentIndex: eth1.index, netnsFd: podFd, mtu: 1400 });
      const mv = await pod.requireLink('mvtmp');
      expect(mv).toMatchObject({ kind: 'macvlan', mode: 'private', mtu: 1400, parentIndex: eth1.index });
      await pod.setLinkUp(mv.index);
      await pod.batch([
        () => pod.addAddress(mv.index, '172.16.0.20/24'),
        () => pod.addAddress(mv.index, 'fd00:16::20/64', { noDad: true }),
      ]);
      await pod.batch([
        () => pod.addRoute({ dst: '192.168.50.0/24', gw: '172.16.0.1', oif: mv.index, mtu: 9000, advmss: 8960, metric: 50 }),
        () => pod.addRoute({ dst: '0.0.0.0/0', gw: '172.16.0.1', oif: mv.index, table: 100 }),
        () => pod.addRoute({ dst: '224.0.0.0/4', oif: mv.index }),
        () => pod.addRoute({ dst: 'fd00:99::/64', gw: 'fd00:16::1', oif: mv.index, table: 1000 }),
        () => pod.addRule({ family: 2, src: '172.16.0.20/32', table: 100, priority: 1000 }),
        () => pod.addRule({ family: 10, src: 'fd00:16::20/128', table: 1000 }),
      ]);
      const t100 = await pod.listRoutes({ family: 2, table: 100 });
      expect(t100).toEqual([expect.objectContaining({ dst: '0.0.0.0/0', gw: '172.16.0.1', oif: mv.index })]);
      const main = await pod.listRoutes({ family: 2, table: 254 });
      expect(main).toContainEqual(expect.objectContaining({ dst: '192.168.50.0/24', mtu: 9000, advmss: 8960, metric: 50 }));
      expect(main).toContainEqual(expect.objectContaining({ dst: '224.0.0.0/4', oif: mv.index, scope: 253 }));
      expect(await pod.listRules(2)).toContainEqual(expect.objectContaining({ src: '172.16.0.20/32', table: 100, priority: 1000 }));
      expect(await pod.listRules(10)).toContainEqual(expect.objectContaining({ src: 'fd00:16::20/128', table: 1000 }));
      expect((await pod.listAddresses(mv.index)).map((a) => a.address)).toEqual(expect.arrayContaining(['172.16.0.20/24', 'fd00:16::20/64']));

      // Deleting is symmetrical.
      await pod.delRule({ family: 2, src: '172.16.0.20/32', table: 100, priority: 1000 });
      await pod.delRoute({ dst: '0.0.0.0/0', gw: '172.16.0.1', oif: mv.index, table: 100 });
      await pod.delAddress(mv.index, '172.16.0.20/24');
      expect(await pod.listRoutes({ family: 2, table: 100 })).toEqual([]);
    });
    const snap = await snapshot(fx.pod);
    expect(addressesOf(snap, 'mvtmp', { family: 4 })).toEqual([]);
    // The last IPv4 address went, and the kernel took the link's IPv4 routes with it.
    expect(routesInTable(snap.routes4, 'main')).toEqual([]);
    expect(snap.rules4.some((r) => r.table === '100')).toBe(false);
  });

  it('kernel refusals are typed: operation, object and errno', async () => {
    await withHandles(async (node, pod) => {
      const eth1 = await node.requireLink('eth1');
      const err = await node.createLink({ name: 'eth1', kind: { kind: 'macvlan', mode: 'bridge' }, parentIndex: eth1.index }).catch((e) => e);
      expect(err).toBeInstanceOf(NetlinkError);
      expect(err).toMatchObject({ operation: 'create link', code: 'EEXIST', errno: 17 });
      expect(err.message).toContain('"eth1"');
      expect(err.toCniError().code).toBe(999);
      const missing = await pod.requireLink('nope0').catch((e) => e);
      expect(missing).toMatchObject({ code: 'ENODEV' });
      expect(await pod.getLink('nope0')).toBeUndefined();
      const gone = await pod.deleteLinkByName('nope0');
      expect(gone).toBe(false);
    });
  });

  it('opening a namespace that does not exist is a typed error', () => {
    expect(() => NetlinkHandle.inNetnsPath('/run/netns/does-not-exist')).toThrow(NetlinkError);
  });

  it('sets and reads sysctls inside a namespace only', async () => {
    const fd = openNetns(fx.pod.path);
    try {
      setSysctls(fd, { 'net.ipv4.ip_forward': '1' });
      expect(getSysctl(fd, 'net.ipv4.ip_forward')).toBe('1');
    } finally {
      closeSync(fd);
    }
    expect((await fx.node.execOk(['cat', '/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('0');
    expect((await fx.pod.execOk(['cat', '/proc/sys/net/ipv4/ip_forward'])).trim()).toBe('1');
  });
});
