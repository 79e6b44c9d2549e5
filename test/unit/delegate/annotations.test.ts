import { describe, expect, it } from 'vitest';
import { networkStatus, parseNetworksAnnotation } from '../../../src/delegate/annotations.js';
import { CniError } from '../../../src/cni/errors.js';

function error(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    return err as CniError;
  }
  throw new Error('expected an error');
}

describe('networks annotation, short form', () => {
  it('names, namespaces and interfaces, comma separated with spaces', () => {
    expect(parseNetworksAnnotation('gke-network-1, other/net-b@storage,c', 'default')).toEqual([
      { name: 'gke-network-1', namespace: 'default' },
      { name: 'net-b', namespace: 'other', interface: 'storage' },
      { name: 'c', namespace: 'default' },
    ]);
  });

  it('the seed example', () => {
    expect(parseNetworksAnnotation('default/gke-network-1,default/gke-network-2', 'x').map((s) => `${s.namespace}/${s.name}`)).toEqual([
      'default/gke-network-1',
      'default/gke-network-2',
    ]);
  });

  it('empty is no networks', () => {
    expect(parseNetworksAnnotation('  ', 'default')).toEqual([]);
  });

  it.each([
    ['Upper', '#0 "Upper"', 'DNS-1123'],
    ['a,,b', '#1', 'empty'],
    ['a/b/c', '#0', '[namespace/]name'],
    ['ns_x/a', 'namespace "ns_x"', 'DNS-1123'],
    ['a@this-name-is-too-long', 'interface "this-name-is-too-long"', '15'],
    ['a@', 'interface ""', 'interface name'],
  ])('%j is code 7 naming the entry', (value, names, why) => {
    const e = error(() => parseNetworksAnnotation(value, 'default'));
    expect(e).toBeInstanceOf(CniError);
    expect(e.code).toBe(7);
    expect(e.message).toContain(names);
    expect(e.message).toContain(why);
  });
});

describe('networks annotation, JSON form', () => {
  it('every key Multus reads', () => {
    const value = JSON.stringify([
      {
        name: 'storage-net',
        namespace: 'infra',
        interface: 'storage',
        ips: ['172.16.0.20/24', '2001:db8::5/64'],
        mac: '02:00:00:00:00:2a',
        'default-route': ['172.16.0.1'],
        'cni-args': { foo: 'bar' },
        portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
        bandwidth: { ingressRate: 1000 },
      },
      { name: 'plain' },
    ]);
    expect(parseNetworksAnnotation(value, 'default')).toEqual([
      {
        name: 'storage-net',
        namespace: 'infra',
        interface: 'storage',
        ips: ['172.16.0.20/24', '2001:db8::5/64'],
        mac: '02:00:00:00:00:2a',
        defaultRoute: ['172.16.0.1'],
        cniArgs: { foo: 'bar' },
        portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
        bandwidth: { ingressRate: 1000 },
      },
      { name: 'plain', namespace: 'default' },
    ]);
  });

  it.each([
    [[{ name: 'a', ips: ['300.1.1.1/24'] }], 'ips "300.1.1.1/24"'],
    [[{ name: 'a', ips: '10.0.0.1/24' }], 'ips must be a list'],
    [[{ name: 'a', mac: 'zz:00:00:00:00:00' }], 'mac "zz:00:00:00:00:00"'],
    [[{ name: 'a', 'default-route': ['nope'] }], 'default-route "nope"'],
    [[{ name: 'a', 'cni-args': [1] }], 'cni-args must be an object'],
    [[{ name: 'a' }, { namespace: 'x' }], '#1'],
    [[{ name: 'a', interface: 'a/b' }], 'interface "a/b"'],
  ])('%j is code 7 naming the entry', (value, names) => {
    const e = error(() => parseNetworksAnnotation(JSON.stringify(value), 'default'));
    expect(e.code).toBe(7);
    expect(e.message).toContain(names);
  });

  it('broken JSON is code 7', () => {
    expect(error(() => parseNetworksAnnotation('[{"name": ', 'default')).code).toBe(7);
  });
});

describe('network-status entries', () => {
  const result = {
    cniVersion: '1.0.0',
    interfaces: [
      { name: 'cni-mn0', mac: '0a:00:00:00:00:01' },
      { name: 'vethX', mac: '0a:00:00:00:00:02' },
      { name: 'eth0', mac: '36:0e:29:e7:42:ad', sandbox: '/run/netns/p' },
    ],
    ips: [{ address: '192.168.1.88/24', gateway: '192.168.1.1', interface: 2 }],
  };

  it('the seed format: name, interface, ips without prefix, mac, default, dns, gateway', () => {
    const s = networkStatus('cluster', 'eth0', result, { isDefault: true });
    expect(s).toEqual({ name: 'cluster', interface: 'eth0', ips: ['192.168.1.88'], mac: '36:0e:29:e7:42:ad', default: true, dns: {}, gateway: ['192.168.1.1'] });
    expect(Object.keys(s)).toEqual(['name', 'interface', 'ips', 'mac', 'default', 'dns', 'gateway']);
  });

  it('mtu and a missing mac come from the link; no default, no gateway when none', () => {
    const r = { cniVersion: '1.0.0', interfaces: [{ name: 'net1', sandbox: '/x' }], ips: [{ address: '21.0.111.1/21', interface: 0 }] };
    expect(networkStatus('default/gke-network-1', 'net1', r, { link: { mac: '00:50:56:82:a7:ab', mtu: 1500 } })).toEqual({
      name: 'default/gke-network-1',
      interface: 'net1',
      ips: ['21.0.111.1'],
      mac: '00:50:56:82:a7:ab',
      mtu: 1500,
      dns: {},
    });
  });
});
