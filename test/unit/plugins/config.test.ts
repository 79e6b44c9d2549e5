import { describe, expect, it } from 'vitest';
import staticIpam from '../../../plugins/ipam/static/static.js';
import macvlan from '../../../plugins/main/macvlan/macvlan.js';
import type { CniEnv } from '../../../src/cni/env.js';
import type { NetConf } from '../../../src/cni/types.js';

function env(args: Record<string, string> = {}): CniEnv {
  return { command: 'ADD', containerId: 'c', netns: '/run/netns/p', ifName: 'net1', args: new Map(Object.entries(args)), path: [] };
}
const base = { cniVersion: '1.0.0', name: 'n' };

function errorOf(fn: () => unknown): { code: number; message: string } {
  try {
    fn();
  } catch (e) {
    return e as { code: number; message: string };
  }
  throw new Error('expected an error');
}

describe('static IPAM config', () => {
  const conf = (ipam: Record<string, unknown>, extra: Partial<NetConf> = {}): NetConf => ({ ...base, type: 'macvlan', ipam: { type: 'static', ...ipam }, ...extra });

  it('reads addresses, routes and dns', async () => {
    const c = staticIpam.loadConf(conf({ addresses: [{ address: '10.0.0.5/24', gateway: '10.0.0.1' }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['10.0.0.53'] } }), env());
    expect(await staticIpam.add(c, {} as never)).toEqual({
      cniVersion: '1.0.0',
      ips: [{ address: '10.0.0.5/24', gateway: '10.0.0.1' }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['10.0.0.53'] },
    });
  });

  it('CNI_ARGS IP= appends and GATEWAY= sets the gateway of the matching subnet', () => {
    const c = staticIpam.loadConf(conf({ addresses: [{ address: '10.0.0.5/24' }] }), env({ IP: '10.1.0.5/24,fd00::5/64', GATEWAY: '10.1.0.1' }));
    expect(c.addresses).toEqual([{ address: '10.0.0.5/24' }, { address: '10.1.0.5/24', gateway: '10.1.0.1' }, { address: 'fd00::5/64' }]);
  });

  it('runtimeConfig.ips, then args.cni.ips, replace the list', () => {
    const withArgs = conf({ addresses: [{ address: '10.0.0.5/24' }] }, { args: { cni: { ips: ['10.2.0.5/24'] } } });
    expect(staticIpam.loadConf(withArgs, env()).addresses).toEqual([{ address: '10.2.0.5/24' }]);
    const withRc = { ...withArgs, runtimeConfig: { ips: ['10.3.0.5/24'] } };
    expect(staticIpam.loadConf(withRc, env()).addresses).toEqual([{ address: '10.3.0.5/24' }]);
  });

  it.each([
    [{ addresses: [{ address: '10.0.0.5' }] }, 'ipam.addresses[0].address', '10.0.0.5'],
    [{ addresses: [{ address: '10.0.0.5/24', gateway: 'fd00::1' }] }, 'ipam.addresses[0].gateway', 'fd00::1'],
    [{ routes: [{ dst: 'default' }] }, 'ipam.routes[0].dst', 'default'],
    [{ routes: [{ dst: '10.9.0.0/16', mtu: 'big' }] }, 'ipam.routes[0].mtu', 'big'],
  ])('rejects %j with code 7 naming %s and the value', (ipam, key, value) => {
    const e = errorOf(() => staticIpam.loadConf(conf(ipam), env()));
    expect(e.code).toBe(7);
    expect(e.message).toContain(key);
    expect(e.message).toContain(value);
  });
});

describe('macvlan config', () => {
  const conf = (extra: Record<string, unknown>): NetConf => ({ ...base, type: 'macvlan', master: 'eth1', ...extra });

  it('defaults: bridge mode, kernel mtu, no IPAM', () => {
    expect(macvlan.loadConf(conf({}), env())).toMatchObject({ master: 'eth1', mode: 'bridge', mtu: 0, hasIpam: false, linkInContainer: false });
  });

  it('MAC precedence: runtimeConfig.mac, then CNI_ARGS MAC, then mac', () => {
    expect(macvlan.loadConf(conf({ mac: '02:00:00:00:00:01' }), env()).mac).toBe('02:00:00:00:00:01');
    expect(macvlan.loadConf(conf({ mac: '02:00:00:00:00:01' }), env({ MAC: '02:00:00:00:00:02' })).mac).toBe('02:00:00:00:00:02');
    expect(macvlan.loadConf(conf({ mac: '02:00:00:00:00:01', runtimeConfig: { mac: '02:00:00:00:00:03' } }), env({ MAC: '02:00:00:00:00:02' })).mac).toBe('02:00:00:00:00:03');
  });

  it.each([
    [{ mode: 'l2' }, 'mode', 'l2'],
    [{ mtu: 20 }, 'mtu', '20'],
    [{ mtu: '1500' }, 'mtu', '1500'],
    [{ mac: '01:00:5e:00:00:01' }, 'mac', '01:00:5e:00:00:01'],
    [{ mac: 'zz' }, 'mac', 'zz'],
    [{ master: 7 }, 'master', '7'],
    [{ ipam: { type: '' } }, 'ipam.type', '""'],
  ])('rejects %j with code 7 naming %s and the value', (extra, key, value) => {
    const e = errorOf(() => macvlan.loadConf(conf(extra), env()));
    expect(e.code).toBe(7);
    expect(e.message).toContain(key);
    expect(e.message).toContain(value);
  });
});
