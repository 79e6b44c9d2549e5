/**
 * The meta-plugin's config and attachment list, without a network or an API server: which
 * networks, in which order, under which names, and the errors that name what is wrong.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { rmSync } from 'node:fs';
import type { CniEnv } from '../../../src/cni/env.js';
import { CniError } from '../../../src/cni/errors.js';
import type { PluginContext } from '../../../src/cni/plugin.js';
import { Rollback } from '../../../src/cni/rollback.js';
import type { NetConf } from '../../../src/cni/types.js';
import plugin, { plan } from '../../../src/delegate/multinic.js';
import { Logger } from '../../../src/log.js';

// Start-up cost: a pod without a kubeconfig must never load the Kubernetes client.
const loaded = vi.hoisted(() => ({ k8s: 0 }));
vi.mock('../../../src/delegate/k8s/client.js', async (original) => {
  loaded.k8s++;
  return original();
});
vi.mock('../../../src/delegate/k8s/kubeconfig.js', async (original) => {
  loaded.k8s++;
  return original();
});

const root = mkdtempSync(join(tmpdir(), 'multinic-unit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function env(args: Record<string, string> = {}): CniEnv {
  return { command: 'ADD', containerId: 'c1', netns: '/run/netns/x', ifName: 'eth0', args: new Map(Object.entries(args)), path: ['/opt/cni/bin'] };
}

function ctx(e: CniEnv): PluginContext {
  return { env: e, log: new Logger(), rollback: new Rollback(), ipam: undefined as never, prevResult: undefined };
}

function conf(extra: Record<string, unknown>): NetConf {
  return { cniVersion: '1.0.0', name: 'multinic-network', type: 'multinic', cniDir: join(root, 'cache'), ...extra } as NetConf;
}

function codeOf(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    return err as CniError;
  }
  throw new Error('expected an error');
}

async function rejection(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (err) {
    return err as CniError;
  }
  throw new Error('expected a rejection');
}

const confDir = join(root, 'net.d');
mkdirSync(confDir, { recursive: true });
writeFileSync(join(confDir, '00-multinic.conf'), JSON.stringify({ cniVersion: '1.0.0', name: 'self', type: 'multinic', delegates: [{}] }));
writeFileSync(join(confDir, '10-flannel.conflist'), JSON.stringify({ cniVersion: '0.4.0', name: 'cbr0', plugins: [{ type: 'flannel' }, { type: 'portmap', capabilities: { portMappings: true } }] }));
writeFileSync(join(confDir, '20-sidecar.conf'), JSON.stringify({ cniVersion: '1.0.0', name: 'sidecar', type: 'macvlan', master: 'eth1' }));
writeFileSync(join(confDir, '30-broken.conf'), '{ not json');

describe('config', () => {
  it('delegates: the first on CNI_IFNAME, then net<i> by position or as asked', () => {
    const c = plugin.loadConf(conf({ delegates: [{ type: 'bridge' }, { type: 'macvlan', ifname: 'storage' }, { type: 'ipvlan' }] }), env());
    expect(c.attachments.map((a) => a.ifName)).toEqual(['eth0', 'storage', 'net2']);
    expect(c.attachments[1]!.list).toEqual({ cniVersion: '1.0.0', name: 'multinic-network-1', plugins: [{ type: 'macvlan' }] });
  });

  it('defaults: cniDir, confDir, systemNamespaces, multusNamespace; globalNamespaces as Multus writes it', () => {
    const c = plugin.loadConf({ cniVersion: '1.0.0', name: 'n', type: 'multinic', clusterNetwork: 'x', globalNamespaces: 'a, b' } as NetConf, env());
    expect(c).toMatchObject({
      cniDir: '/var/lib/cni/multinic',
      confDir: '/etc/cni/multus/net.d',
      systemNamespaces: ['kube-system'],
      multusNamespace: 'kube-system',
      globalNamespaces: ['a', 'b'],
      namespaceIsolation: false,
      retryDeleteOnError: false,
    });
  });

  it.each([
    [{}, 'delegates'],
    [{ delegates: [{ type: 'x' }], defaultNetworks: ['a'] }, 'defaultNetworks'],
    [{ clusterNetwork: 'x', cniDir: 'relative' }, 'cniDir'],
    [{ clusterNetwork: 'x', apiTimeoutMs: -1 }, 'apiTimeoutMs'],
    [{ clusterNetwork: 'x', namespaceIsolation: 'yes' }, 'namespaceIsolation'],
    [{ clusterNetwork: 'x', systemNamespaces: [1] }, 'systemNamespaces'],
    [{ clusterNetwork: 7 }, 'clusterNetwork'],
    [{ delegates: [{ type: 'x', ifname: 'a/b' }] }, 'delegates[0].ifname'],
  ])('%j is code 7 naming %s', (extra, key) => {
    const e = codeOf(() => plugin.loadConf(conf(extra), env()));
    expect(e.code).toBe(7);
    expect(e.message).toContain(key);
  });
});

describe('attachments without an API server', () => {
  it('clusterNetwork by conf name in confDir (a broken neighbour and our own conf are skipped), then defaultNetworks', async () => {
    const c = plugin.loadConf(conf({ confDir, clusterNetwork: 'cbr0', defaultNetworks: ['sidecar'] }), env());
    const p = await plan(c, ctx(env({ K8S_POD_NAMESPACE: 'default' })), true);
    expect(p.attachments.map((a) => [a.ifName, a.network, a.list.plugins.map((x) => x.type)])).toEqual([
      ['eth0', 'cbr0', ['flannel', 'portmap']],
      ['net1', 'sidecar', ['macvlan']],
    ]);
    expect(p.kube).toBeUndefined();
    expect(loaded.k8s).toBe(0);
  });

  it('systemNamespaces get no defaultNetworks', async () => {
    const c = plugin.loadConf(conf({ confDir, clusterNetwork: 'cbr0', defaultNetworks: ['sidecar'] }), env());
    const p = await plan(c, ctx(env({ K8S_POD_NAMESPACE: 'kube-system' })), true);
    expect(p.attachments.map((a) => a.ifName)).toEqual(['eth0']);
  });

  it('clusterNetwork as a directory: its first conf that is not ours', async () => {
    const c = plugin.loadConf(conf({ clusterNetwork: confDir }), env());
    expect((await plan(c, ctx(env()), false)).attachments[0]!.list.name).toBe('cbr0');
  });

  it('clusterNetwork as a file path', async () => {
    const c = plugin.loadConf(conf({ clusterNetwork: join(confDir, '20-sidecar.conf') }), env());
    expect((await plan(c, ctx(env()), false)).attachments[0]!.list).toMatchObject({ name: 'sidecar', plugins: [{ type: 'macvlan', master: 'eth1' }] });
  });

  it('an unknown name without a kubeconfig is code 7 naming the key and confDir', async () => {
    const c = plugin.loadConf(conf({ confDir, clusterNetwork: 'calico' }), env());
    const e = await rejection(plan(c, ctx(env()), true));
    expect(e.code).toBe(7);
    expect(e.message).toContain('clusterNetwork "calico"');
    expect(e.message).toContain(confDir);
  });

  it('two attachments asking for one name are code 7 naming both', async () => {
    const c = plugin.loadConf(conf({ delegates: [{ type: 'bridge' }, { type: 'macvlan', ifname: 'net2' }, { type: 'ipvlan' }] }), env());
    const e = await rejection(plan(c, ctx(env()), false));
    expect(e.code).toBe(7);
    expect(e.message).toContain('"net2"');
    expect(e.message).toContain('delegates[1]');
    expect(e.message).toContain('delegates[2]');
  });

  it('each plan has its own copy of the delegates', async () => {
    const c = plugin.loadConf(conf({ delegates: [{ type: 'bridge' }] }), env());
    const a = await plan(c, ctx(env()), false);
    a.attachments[0]!.list.plugins[0]!.mutated = true;
    expect((await plan(c, ctx(env()), false)).attachments[0]!.list.plugins[0]).toEqual({ type: 'bridge' });
  });
});
