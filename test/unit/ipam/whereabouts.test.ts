import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CniEnv } from '../../../src/cni/env.js';
import { CniError } from '../../../src/cni/errors.js';
import type { PluginContext } from '../../../src/cni/plugin.js';
import { Rollback } from '../../../src/cni/rollback.js';
import type { NetConf } from '../../../src/cni/types.js';
import { Logger } from '../../../src/log.js';
import { loadWhereaboutsConf } from '../../../plugins/ipam/whereabouts/config.js';
import plugin from '../../../plugins/ipam/whereabouts/whereabouts.js';
import staticPlugin from '../../../plugins/ipam/static/static.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'wb-unit-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function env(args: Record<string, string> = {}, containerId = 'c1', ifName = 'net1'): CniEnv {
  return { command: 'ADD', containerId, netns: '/run/netns/x', ifName, args: new Map(Object.entries(args)), path: [] };
}
const POD = { K8S_POD_NAMESPACE: 'ns', K8S_POD_NAME: 'p1' };

function conf(ipam: Record<string, unknown>, extra: Partial<NetConf> = {}): NetConf {
  return { cniVersion: '1.0.0', name: 'net', type: 'macvlan', ipam: { type: 'whereabouts', data_dir: dir, ...ipam }, ...extra };
}
const load = (c: NetConf, e = env(POD)) => loadWhereaboutsConf(c, e, { flatFilePaths: [] });

function ctx(e: CniEnv): PluginContext {
  return {
    env: e,
    log: new Logger(),
    rollback: new Rollback(),
    ipam: { add: async () => ({ cniVersion: '1.0.0' }), del: async () => {}, check: async () => {} },
    prevResult: undefined,
  };
}

function codeOf(fn: () => unknown): { code: number; msg: string } {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return { code: e.code, msg: e.message };
    throw e;
  }
  throw new Error('did not throw');
}

describe('whereabouts config', () => {
  it('reads range, bounds, excludes, gateway, routes, dns and the pod ref', () => {
    const c = load(
      conf({
        range: '192.168.1.0/24',
        range_start: '192.168.1.10',
        range_end: '192.168.1.20',
        exclude: ['192.168.1.12/31'],
        gateway: '192.168.1.1',
        routes: [{ dst: '10.0.0.0/8' }],
        dns: { nameservers: ['192.168.1.2'] },
        network_name: 'blue',
        enable_overlapping_ranges: false,
      }),
    );
    expect(c.ranges).toHaveLength(1);
    expect(c.ranges[0]!.cidr).toBe('192.168.1.0/24');
    expect(c.gateway).toBe('192.168.1.1');
    expect(c.routes).toEqual([{ dst: '10.0.0.0/8' }]);
    expect(c.dns).toEqual({ nameservers: ['192.168.1.2'] });
    expect(c.networkName).toBe('blue');
    expect(c.overlapping).toBe(false);
    expect(c.owner).toEqual({ containerId: 'c1', podRef: 'ns/p1', ifName: 'net1' });
    expect(c.dataDir).toBe(dir);
  });

  it('defaults: overlapping on, file datastore, /var/lib/cni/whereabouts, no pod ref without K8S args', () => {
    const c = loadWhereaboutsConf({ cniVersion: '1.0.0', name: 'n', type: 'x', ipam: { type: 'whereabouts', range: '10.0.0.0/24' } }, env(), { flatFilePaths: [] });
    expect(c.overlapping).toBe(true);
    expect(c.datastore).toBe('file');
    expect(c.dataDir).toBe('/var/lib/cni/whereabouts');
    expect(c.owner.podRef).toBe('');
  });

  it('the top-level range is entry 0 of ipRanges', () => {
    const c = load(conf({ range: 'fd00::/64', ipRanges: [{ range: '10.0.0.0/24', exclude: ['10.0.0.1'] }, { range: '10.1.0.5-10.1.0.9/24' }] }));
    expect(c.ranges.map((r) => r.cidr)).toEqual(['fd00::/64', '10.0.0.0/24', '10.1.0.0/24']);
  });

  it('ignored bounds become warnings naming the key', () => {
    const c = load(conf({ ipRanges: [{ range: '10.0.0.0/24', range_start: '10.9.9.9' }] }));
    expect(c.warnings).toEqual(['ipam.ipRanges[0].range_start 10.9.9.9 is outside the usable addresses of 10.0.0.0/24; ignored']);
  });

  it.each([
    [{ range: 'banana' }, 'ipam.range', 'banana'],
    [{}, 'ipam.range', 'undefined'],
    [{ range: '10.0.0.0/24', range_start: 'x' }, 'ipam.range_start', 'x'],
    [{ range: '10.0.0.0/24', exclude: ['10.0.0.0/24', 'nope'] }, 'ipam.exclude[1]', 'nope'],
    [{ range: '10.0.0.0/24', exclude: 'nope' }, 'ipam.exclude', 'nope'],
    [{ ipRanges: [{ range: '10.0.0.0/24' }, { range: '10.0.0.300/24' }] }, 'ipam.ipRanges[1].range', '10.0.0.300/24'],
    [{ range: '10.0.2.1-10.0.1.9/24' }, 'ipam.range', '10.0.2.1-10.0.1.9/24'],
    [{ range: '10.0.0.0/24', gateway: 'gw' }, 'ipam.gateway', 'gw'],
    [{ range: '10.0.0.0/24', network_name: '../etc' }, 'ipam.network_name', '../etc'],
    [{ range: '10.0.0.0/24', network_name: 'a/b' }, 'ipam.network_name', 'a/b'],
    [{ range: '10.0.0.0/24', datastore: 'consul' }, 'ipam.datastore', 'consul'],
    [{ range: '10.0.0.0/24', data_dir: 'relative/dir' }, 'ipam.data_dir', 'relative/dir'],
    [{ range: '10.0.0.0/24', enable_overlapping_ranges: 'yes' }, 'ipam.enable_overlapping_ranges', 'yes'],
    [{ range: '10.0.0.0/24', addresses: [{ address: '10.9.0.1' }] }, 'ipam.addresses[0].address', '10.9.0.1'],
  ])('bad config %j is code 7 naming %s and the value', (ipam, key, value) => {
    const { code, msg } = codeOf(() => load(conf(ipam as Record<string, unknown>)));
    expect(code).toBe(7);
    expect(msg).toContain(key);
    expect(msg).toContain(value);
  });

  it('datastore kubernetes reads whereabouts\' kubernetes.kubeconfig', () => {
    const c = load(conf({ range: '10.0.0.0/24', datastore: 'kubernetes', kubernetes: { kubeconfig: '/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig' }, etcd_host: 'x', log_file: '/tmp/x', log_level: 'debug' }));
    expect(c.datastore).toBe('kubernetes');
    expect(c.store).toEqual({ datastore: 'kubernetes', kubeconfig: '/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig', timeoutMs: 10_000 });
    expect(c.warnings).toEqual([]);
  });

  it('datastore etcd reads whereabouts\' legacy etcd_* keys', () => {
    const c = load(conf({
      range: '10.0.0.0/24', datastore: 'etcd', etcd_host: 'https://10.0.0.1:2379,10.0.0.2:2379', etcd_username: 'u', etcd_password: 'p',
      etcd_ca_cert_file: '/pki/ca.crt', etcd_cert_file: '/pki/c.crt', etcd_key_file: '/pki/c.key', datastore_timeout_ms: 3000,
    }));
    expect(c.store).toEqual({
      datastore: 'etcd', timeoutMs: 3000,
      etcd: { endpoints: ['https://10.0.0.1:2379', '10.0.0.2:2379'], username: 'u', password: 'p', caFile: '/pki/ca.crt', certFile: '/pki/c.crt', keyFile: '/pki/c.key' },
    });
    expect(load(conf({ range: '10.0.0.0/24', datastore: 'etcd', etcd_endpoints: ['http://127.0.0.1:2379'], etcd_prefix: '/p' })).store)
      .toEqual({ datastore: 'etcd', timeoutMs: 10_000, prefix: '/p', etcd: { endpoints: ['http://127.0.0.1:2379'] } });
  });

  it.each([
    [{ datastore: 'kubernetes' }, 'ipam.kubernetes.kubeconfig'],
    [{ datastore: 'etcd' }, 'ipam.etcd_host'],
    [{ datastore: 'etcd', etcd_host: 'ftp://x' }, 'ipam.etcd_host'],
    [{ datastore: 'etcd', etcd_host: 'h:1', etcd_cert_file: '/c' }, 'ipam.etcd_key_file'],
    [{ datastore: 'etcd', etcd_host: 'h:1', etcd_ca_cert_file: 'rel' }, 'ipam.etcd_ca_cert_file'],
    [{ datastore: 'etcd', etcd_host: 'h:1', datastore_timeout_ms: 5 }, 'ipam.datastore_timeout_ms'],
  ])('cluster store config %j is code 7 naming %s', (extra, key) => {
    const { code, msg } = codeOf(() => load(conf({ range: '10.0.0.0/24', ...extra })));
    expect(code).toBe(7);
    expect(msg).toContain(key);
  });

  it('the flat file fills only unset keys; its absence is not an error', () => {
    const flat = join(dir, 'whereabouts.conf');
    writeFileSync(flat, JSON.stringify({ datastore: 'kubernetes', range: '10.9.0.0/16', gateway: '10.0.0.1', network_name: 'fromflat', kubernetes: { kubeconfig: '/k' } }));
    const c = loadWhereaboutsConf(conf({ range: '10.0.0.0/24', configuration_path: flat }), env(POD), { flatFilePaths: [] });
    expect(c.ranges[0]!.cidr).toBe('10.0.0.0/24');
    expect(c.gateway).toBe('10.0.0.1');
    expect(c.networkName).toBe('fromflat');
    expect(c.flatFile).toBe(flat);
    const none = loadWhereaboutsConf(conf({ range: '10.0.0.0/24' }), env(POD), { flatFilePaths: [join(dir, 'absent.conf')] });
    expect(none.flatFile).toBeUndefined();
  });

  it('a flat file that does not parse is code 7 naming it', () => {
    const flat = join(dir, 'bad.conf');
    writeFileSync(flat, '{');
    const { code, msg } = codeOf(() => loadWhereaboutsConf(conf({ range: '10.0.0.0/24' }), env(POD), { flatFilePaths: [flat] }));
    expect(code).toBe(7);
    expect(msg).toContain(flat);
  });

  it('CNI_ARGS IP= and GATEWAY= add static entries', () => {
    const c = load(conf({ range: '10.0.0.0/24', addresses: [{ address: '10.5.0.9/24', gateway: '10.5.0.1' }] }), env({ ...POD, IP: '10.6.0.7/24,fd00::7/64', GATEWAY: '10.6.0.1' }));
    expect(c.addresses).toEqual([
      { address: '10.5.0.9/24', gateway: '10.5.0.1' },
      { address: '10.6.0.7/24', gateway: '10.6.0.1' },
      { address: 'fd00::7/64' },
    ]);
  });
});

describe('whereabouts plugin', () => {
  it('ADD: allocated addresses with the gateway of their family, then static entries; routes and dns', async () => {
    const raw = conf({
      ipRanges: [{ range: '10.0.0.0/24' }, { range: 'fd00::/64' }],
      gateway: '10.0.0.254',
      addresses: [{ address: '192.0.2.5/24' }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.254' }],
      dns: { nameservers: ['10.0.0.53'] },
    });
    const e = env(POD);
    const result = await plugin.add(plugin.loadConf(raw, e), ctx(e));
    expect(result).toEqual({
      cniVersion: '1.0.0',
      ips: [{ address: '10.0.0.1/24', gateway: '10.0.0.254' }, { address: 'fd00::1/64' }, { address: '192.0.2.5/24' }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.0.0.254' }],
      dns: { nameservers: ['10.0.0.53'] },
    });
  });

  it('DEL then CHECK: CHECK fails once the allocation is gone; DEL twice succeeds', async () => {
    const raw = conf({ range: '10.0.0.0/24' });
    const e = env(POD);
    const c = plugin.loadConf(raw, e);
    await plugin.add(c, ctx(e));
    await plugin.check(c, ctx({ ...e, command: 'CHECK' }));
    await plugin.del(c, ctx({ ...e, command: 'DEL' }));
    await plugin.del(c, ctx({ ...e, command: 'DEL' }));
    await expect(plugin.check(c, ctx({ ...e, command: 'CHECK' }))).rejects.toThrow(/no address of range 10.0.0.0\/24/);
  });

  it('GC without a valid-attachments list releases nothing', async () => {
    const raw = conf({ range: '10.0.0.0/24' });
    const e = env(POD);
    const c = plugin.loadConf(raw, e);
    await plugin.add(c, ctx(e));
    await plugin.gc!(c, ctx({ ...e, command: 'GC' }), []);
    await plugin.check(c, ctx({ ...e, command: 'CHECK' }));
  });
});

describe('static IPAM', () => {
  const sconf = (ipam: Record<string, unknown>, extra: Partial<NetConf> = {}): NetConf => ({
    cniVersion: '1.0.0',
    name: 'n',
    type: 'macvlan',
    ipam: { type: 'static', ...ipam },
    ...extra,
  });

  it('addresses with gateways, routes and dns', async () => {
    const e = env();
    const c = staticPlugin.loadConf(
      sconf({ addresses: [{ address: '10.0.0.5/24', gateway: '10.0.0.1' }, { address: 'fd00::5/64' }], routes: [{ dst: '0.0.0.0/0' }], dns: { nameservers: ['1.1.1.1'] } }),
      e,
    );
    expect(await staticPlugin.add(c, ctx(e))).toEqual({
      cniVersion: '1.0.0',
      ips: [{ address: '10.0.0.5/24', gateway: '10.0.0.1' }, { address: 'fd00::5/64' }],
      routes: [{ dst: '0.0.0.0/0' }],
      dns: { nameservers: ['1.1.1.1'] },
    });
  });

  it('CNI_ARGS IP= appends, GATEWAY= sets the gateway of the address whose subnet holds it', async () => {
    const e = env({ IP: '10.1.0.5/24', GATEWAY: '10.1.0.1' });
    const c = staticPlugin.loadConf(sconf({ addresses: [{ address: '10.0.0.5/24' }] }), e);
    expect((await staticPlugin.add(c, ctx(e))).ips).toEqual([{ address: '10.0.0.5/24' }, { address: '10.1.0.5/24', gateway: '10.1.0.1' }]);
  });

  it('args.cni.ips and runtimeConfig.ips replace the list (runtimeConfig last); empty lists do not', async () => {
    const e = env();
    const base = { addresses: [{ address: '10.0.0.5/24' }] };
    const fromArgs = staticPlugin.loadConf(sconf(base, { args: { cni: { ips: ['10.2.0.5/24'] } } }), e);
    expect((await staticPlugin.add(fromArgs, ctx(e))).ips).toEqual([{ address: '10.2.0.5/24' }]);
    const fromRc = staticPlugin.loadConf(sconf(base, { args: { cni: { ips: ['10.2.0.5/24'] } }, runtimeConfig: { ips: ['10.3.0.5/24'] } }), e);
    expect((await staticPlugin.add(fromRc, ctx(e))).ips).toEqual([{ address: '10.3.0.5/24' }]);
    const empty = staticPlugin.loadConf(sconf(base, { args: { cni: { ips: [] } }, runtimeConfig: { ips: [] } }), e);
    expect((await staticPlugin.add(empty, ctx(e))).ips).toEqual([{ address: '10.0.0.5/24' }]);
  });

  it('a bad address is code 7 naming the key', () => {
    const { code, msg } = codeOf(() => staticPlugin.loadConf(sconf({ addresses: [{ address: '10.0.0.5' }] }), env()));
    expect(code).toBe(7);
    expect(msg).toContain('ipam.addresses[0].address');
  });
});

describe('path safety', () => {
  it('the longest network_name with the longest IPv6 range still allocates (file names within 255 bytes)', async () => {
    const name = 'n'.repeat(180);
    const raw = conf({ range: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124', network_name: name });
    const e = env(POD);
    const result = await plugin.add(plugin.loadConf(raw, e), ctx(e));
    expect(result.ips![0]!.address).toBe('ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff1/124');
    expect(() => load(conf({ range: '10.0.0.0/24', network_name: 'n'.repeat(181) }))).toThrow(/ipam.network_name/);
  });
});
