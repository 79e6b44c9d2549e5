/**
 * Static routes from an IPAM result, as macvlan + static install them (plugins/pkg/iface.ts):
 * the CNI 1.1 route fields, a multicast range on the secondary interface, and duplicate or
 * conflicting routes failing with an error that names the route.
 */
import { describe, expect, it } from 'vitest';
import { routesInTable, runCnitool, snapshot, useNetnsFixture } from '../helpers/index.js';

describe('static routes', () => {
  const fx = useNetnsFixture({ nics: [{ name: 'eth1', peerAddress: ['192.0.2.1/24'] }] });

  const conf = (routes: object[], gateway?: string, sbr = false) => ({
    cniVersion: '1.0.0',
    name: 'rnet',
    plugins: [
      {
        type: 'macvlan',
        master: 'eth1',
        ipam: { type: 'static', addresses: [{ address: '192.0.2.40/24', ...(gateway ? { gateway } : {}) }], routes },
      },
      ...(sbr ? [{ type: 'sbr' }] : []),
    ],
  });
  const cni = (command: 'add' | 'del' | 'check', c: object) =>
    runCnitool({ node: fx.node, netns: fx.pod, command, netName: 'rnet', confs: [c], ifName: 'net1' });

  it('installs dst, gw, mtu, advmss, priority, table and scope in one batch', async () => {
    const c = conf([
      { dst: '203.0.113.0/24', gw: '192.0.2.1', mtu: 1400, advmss: 1360, priority: 50 },
      { dst: '198.51.100.0/24', gw: '192.0.2.1', table: 200 },
      { dst: '10.20.0.0/16', scope: 253 },
    ]);
    const add = await cni('add', c);
    expect(add.exitCode, add.stderr).toBe(0);
    const s = await snapshot(fx.pod);
    expect(routesInTable(s.routes4, 'main')).toContainEqual(
      expect.objectContaining({ dst: '203.0.113.0/24', gateway: '192.0.2.1', dev: 'net1', metric: 50, metrics: [{ mtu: 1400, advmss: 1360 }] }),
    );
    expect(routesInTable(s.routes4, 200)).toContainEqual(expect.objectContaining({ dst: '198.51.100.0/24', gateway: '192.0.2.1', dev: 'net1' }));
    expect(routesInTable(s.routes4, 'main')).toContainEqual(expect.objectContaining({ dst: '10.20.0.0/16', dev: 'net1', scope: 'link' }));
    expect((await cni('del', c)).exitCode).toBe(0);
  });

  it('a multicast range goes over net1 (224.0.0.0/4 dev net1), also under sbr', async () => {
    const c = conf([{ dst: '224.0.0.0/4' }]);
    expect((await cni('add', c)).exitCode).toBe(0);
    expect(routesInTable((await snapshot(fx.pod)).routes4, 'main')).toContainEqual(
      expect.objectContaining({ dst: '224.0.0.0/4', dev: 'net1', scope: 'link' }),
    );
    expect(await fx.pod.ip('route', 'get', '239.1.2.3')).toMatch(/^multicast 239\.1\.2\.3 dev net1/);
    expect((await cni('del', c)).exitCode).toBe(0);

    const withSbr = conf([{ dst: '224.0.0.0/4' }], undefined, true);
    expect((await cni('add', withSbr)).exitCode).toBe(0);
    expect(routesInTable((await snapshot(fx.pod)).routes4, 100)).toContainEqual(
      expect.objectContaining({ dst: '224.0.0.0/4', dev: 'net1' }),
    );
    expect(await fx.pod.ip('route', 'get', '239.1.2.3', 'from', '192.0.2.40')).toMatch(/dev net1/);
  });

  it('a duplicate route is an error naming it, and the ADD leaves nothing', async () => {
    const add = await cni('add', conf([{ dst: '198.51.100.0/24' }, { dst: '198.51.100.0/24' }], '192.0.2.1'));
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr).toMatch(/duplicate route 198\.51\.100\.0\/24 via 192\.0\.2\.1 dev net1 \(routes\[0\] and routes\[1\]\)/);
    expect((await snapshot(fx.pod)).links.map((l) => l.ifname)).toEqual(['lo']);
  });

  it('two different routes to one destination are an error naming both', async () => {
    const add = await cni('add', conf([{ dst: '198.51.100.0/24', gw: '192.0.2.1' }, { dst: '198.51.100.0/24', gw: '192.0.2.2' }]));
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr).toMatch(/conflicting routes\[0\] 198\.51\.100\.0\/24 via 192\.0\.2\.1 dev net1 and routes\[1\] 198\.51\.100\.0\/24 via 192\.0\.2\.2 dev net1/);
  });

  it('a route that clashes with one already in the pod is an error naming it', async () => {
    await fx.pod.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
    await fx.pod.ip('link', 'set', 'eth0', 'up');
    await fx.pod.ip('route', 'add', '198.51.100.0/24', 'dev', 'eth0');
    const add = await cni('add', conf([{ dst: '198.51.100.0/24' }], '192.0.2.1'));
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr).toMatch(/route 198\.51\.100\.0\/24 via 192\.0\.2\.1 dev net1 \(routes\[0\]\) conflicts with a route already in table main/);
    expect((await snapshot(fx.pod)).links.map((l) => l.ifname).sort()).toEqual(['eth0', 'eth0p', 'lo']);
  });
});
