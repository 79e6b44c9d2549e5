/**
 * The meta-plugin as a cluster runs it: one `multinic` conf whose clusterNetwork is Debian's
 * bridge + host-local (standing in for the cluster CNI), and secondary attachments from the
 * pod's networks annotation, read from a fake API server listening inside the node netns (the
 * plugins run there). NADs use multinic's built-in macvlan + whereabouts + sbr on the node's
 * secondary NIC eth1. Everything goes through build/cnitool (libcni) as kubelet would.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import {
  type CnitoolOptions,
  addressesOf,
  findLink,
  multinicBin,
  normalize,
  routesInTable,
  runCnitool,
  runPluginDirect,
  cniPathFor,
  snapshot,
  useNetnsFixture,
} from '../helpers/index.js';

const fx = useNetnsFixture({ nics: [{ name: 'eth1', peerAddress: '172.16.0.1/24' }] });

const POD_ARGS = { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'samplepod', K8S_POD_INFRA_CONTAINER_ID: 'c1' };
const STATUS = 'k8s.v1.cni.cncf.io/network-status';

const paths = () => ({
  confDir: join(fx.tmpDir, 'net.d'),
  cniDir: join(fx.tmpDir, 'multinic-cache'),
  hostLocal: join(fx.tmpDir, 'host-local'),
  pools: join(fx.tmpDir, 'whereabouts'),
});

/** The cluster's network in confDir, and the meta-plugin's conf pointing at it by name. */
function setup(api: FakeApiServer, extra: Record<string, unknown> = {}) {
  const p = paths();
  mkdirSync(p.confDir, { recursive: true });
  writeFileSync(join(p.confDir, '10-cluster.conflist'), JSON.stringify({
    cniVersion: '1.0.0',
    name: 'cluster',
    plugins: [{ type: 'bridge', bridge: 'cni-mn0', isGateway: true, ipam: { type: 'host-local', subnet: '10.244.1.0/24', routes: [{ dst: '0.0.0.0/0' }], dataDir: p.hostLocal } }],
  }));
  return {
    cniVersion: '1.0.0',
    name: 'multinic-network',
    type: 'multinic',
    kubeconfig: api.writeKubeconfig(join(fx.tmpDir, 'kube')),
    confDir: p.confDir,
    clusterNetwork: 'cluster',
    cniDir: p.cniDir,
    apiTimeoutMs: 2000,
    logFile: join(fx.tmpDir, 'multinic.log'),
    logLevel: 'debug',
    ...extra,
  };
}

/** The Anthos guide's NAD: a NIC on the secondary network, whereabouts with a gateway, sbr. */
function storageNad(extraPlugins: object[] = [], range = '172.16.0.0/24') {
  return {
    cniVersion: '1.0.0',
    name: 'storage-net',
    plugins: [
      {
        type: 'macvlan',
        master: 'eth1',
        mode: 'bridge',
        ipam: { type: 'whereabouts', range, range_start: '172.16.0.10', gateway: '172.16.0.1', data_dir: paths().pools },
      },
      { type: 'sbr' },
      ...extraPlugins,
    ],
  };
}

async function startApi(): Promise<FakeApiServer> {
  const api = new FakeApiServer(['good-token']);
  await api.start({ netns: fx.node.path });
  onTestFinished(() => api.stop());
  return api;
}

function run(conf: object, command: CnitoolOptions['command'], extra: Partial<CnitoolOptions> = {}) {
  return runCnitool({ command, netName: 'multinic-network', confs: [conf], node: fx.node, netns: fx.pod, containerId: 'c1', args: POD_ARGS, ...extra });
}

/** Allocations of every whereabouts pool (none when no pool file was written). */
function allocations(): Record<string, unknown> {
  const dir = join(paths().pools, 'ippools');
  if (!existsSync(dir)) return {};
  const out: Record<string, unknown> = {};
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.json'))) {
    Object.assign(out, JSON.parse(readFileSync(join(dir, f), 'utf8')).spec.allocations ?? {});
  }
  return out;
}

function hostLocalLeases(): string[] {
  const dir = join(paths().hostLocal, 'cluster');
  return existsSync(dir) ? readdirSync(dir).filter((f) => /^\d/.test(f)) : [];
}

function cacheFiles(): string[] {
  return existsSync(paths().cniDir) ? readdirSync(paths().cniDir) : [];
}

/** Everything an ADD may change: pod and node links, addresses, routes, rules; pools; cache. */
async function world() {
  const node = await snapshot(fx.node);
  return {
    pod: normalize(await snapshot(fx.pod)),
    // The reference bridge plugin keeps its bridge after the last DEL, by design: not ours to judge.
    nodeLinks: node.links.map((l) => l.ifname as string).filter((n) => n !== 'cni-mn0').sort(),
    allocations: allocations(),
    hostLocal: hostLocalLeases(),
    cache: cacheFiles(),
  };
}

describe('clusterNetwork + pod networks from the API server', () => {
  it('eth0, net1 and storage; network-status with three entries; CHECK; DEL with the API server down', async () => {
    const api = await startApi();
    const conf = setup(api);
    api.addNad('default', 'storage-net', storageNad());
    api.addPod('default', 'samplepod', { 'k8s.v1.cni.cncf.io/networks': 'storage-net, default/storage-net@storage' });

    const add = await run(conf, 'add');
    expect(add.exitCode, add.stderr).toBe(0);
    // ADD returns the primary's result.
    expect(add.json.ips).toEqual([expect.objectContaining({ address: '10.244.1.2/24', gateway: '10.244.1.1' })]);

    const snap = await snapshot(fx.pod);
    expect(snap.links.map((l) => l.ifname).sort()).toEqual(['eth0', 'lo', 'net1', 'storage']);
    expect(addressesOf(snap, 'eth0')).toContain('10.244.1.2/24');
    expect(addressesOf(snap, 'net1', { scope: 'global' })).toEqual(['172.16.0.10/24']);
    expect(addressesOf(snap, 'storage', { scope: 'global' })).toEqual(['172.16.0.11/24']);
    expect(findLink(snap, 'storage')).toMatchObject({ linkinfo: { info_kind: 'macvlan' } });
    // sbr: a table per secondary interface, a rule from its address.
    expect(snap.rules4).toContainEqual(expect.objectContaining({ src: '172.16.0.10', table: '100' }));
    expect(snap.rules4).toContainEqual(expect.objectContaining({ src: '172.16.0.11', table: '101' }));
    expect(routesInTable(snap.routes4, 100)).toContainEqual(expect.objectContaining({ dst: 'default', gateway: '172.16.0.1', dev: 'net1' }));
    // The pod's default route stays on eth0.
    expect(routesInTable(snap.routes4, 'main')).toContainEqual(expect.objectContaining({ dst: 'default', gateway: '10.244.1.1', dev: 'eth0' }));
    expect(Object.keys(allocations())).toHaveLength(2);

    // network-status, in the seed's format.
    const pod = api.getPod('default', 'samplepod')!;
    const status = JSON.parse(pod.metadata.annotations[STATUS]);
    const mac = (ifname: string) => findLink(snap, ifname)!.address as string;
    expect(status).toEqual([
      { name: 'cluster', interface: 'eth0', ips: ['10.244.1.2'], mac: mac('eth0'), mtu: 1500, default: true, dns: {}, gateway: ['10.244.1.1'] },
      { name: 'default/storage-net', interface: 'net1', ips: ['172.16.0.10'], mac: mac('net1'), mtu: 1500, dns: {}, gateway: ['172.16.0.1'] },
      { name: 'default/storage-net', interface: 'storage', ips: ['172.16.0.11'], mac: mac('storage'), mtu: 1500, dns: {}, gateway: ['172.16.0.1'] },
    ]);
    const calls = api.requests.map((r) => `${r.method} ${r.path}`);
    expect(calls).toEqual([
      'GET /api/v1/namespaces/default/pods/samplepod',
      // The same NAD twice is read once.
      'GET /apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/storage-net',
      'PATCH /api/v1/namespaces/default/pods/samplepod/status',
    ]);
    expect(api.requests.at(-1)!.contentType).toBe('application/merge-patch+json');

    // The cache: 0600, written before the first delegate, with every full config.
    const [cacheFile] = cacheFiles();
    const cached = JSON.parse(readFileSync(join(paths().cniDir, cacheFile!), 'utf8'));
    expect(cached.attachments.map((a: { ifName: string }) => a.ifName)).toEqual(['eth0', 'net1', 'storage']);
    const { statSync } = await import('node:fs');
    expect(statSync(join(paths().cniDir, cacheFile!)).mode & 0o777).toBe(0o600);

    const check = await run(conf, 'check');
    expect(check.exitCode, check.stderr).toBe(0);

    // CHECK checks every attachment, not only the primary.
    await fx.pod.ip('addr', 'del', '172.16.0.11/24', 'dev', 'storage');
    const broken = await run(conf, 'check');
    expect(broken.exitCode).not.toBe(0);
    expect(broken.stderr + broken.stdout).toContain('storage');

    await api.stop();
    const del = await run(conf, 'del');
    expect(del.exitCode, del.stderr).toBe(0);
    const after = await snapshot(fx.pod);
    expect(after.links.map((l) => l.ifname)).toEqual(['lo']);
    expect(after.rules4.filter((r) => r.table === '100' || r.table === '101')).toEqual([]);
    expect(allocations()).toEqual({});
    expect(hostLocalLeases()).toEqual([]);
    expect(cacheFiles()).toEqual([]);
  });

  it('failing the second pod attachment leaves exactly the state before ADD', async () => {
    const api = await startApi();
    const conf = setup(api);
    api.addNad('default', 'storage-net', storageNad());
    // The second NAD gets its link, address and sbr table, then tuning fails.
    api.addNad('default', 'bad-net', {
      ...storageNad([{ type: 'tuning', sysctl: { 'net.ipv4.conf.IFNAME.no_such_sysctl': '1' } }]),
      name: 'bad-net',
    });
    api.addPod('default', 'samplepod', { 'k8s.v1.cni.cncf.io/networks': 'storage-net,bad-net' });
    const before = await world();

    const add = await run(conf, 'add');
    expect(add.exitCode).not.toBe(0);
    expect(add.stderr + add.stdout).toContain('no_such_sysctl');
    expect(await world()).toEqual(before);
    // No status was written for a pod that did not get its networks.
    expect(api.getPod('default', 'samplepod')!.metadata.annotations[STATUS]).toBeUndefined();
  });

  it('a failing network-status write rolls every attachment back, code 11', async () => {
    const api = await startApi();
    const conf = setup(api);
    api.addNad('default', 'storage-net', storageNad());
    api.addPod('default', 'samplepod', { 'k8s.v1.cni.cncf.io/networks': 'storage-net' });
    api.fail(500, { method: 'PATCH' });
    const before = await world();
    const add = await run(conf, 'add');
    expect(add.exitCode).not.toBe(0);
    expect(add.json).toMatchObject({ code: 11 });
    expect(add.json.msg).toContain('samplepod');
    expect(await world()).toEqual(before);
  });

  it('the API server down on ADD is code 11 and changes nothing', async () => {
    const api = await startApi();
    const conf = setup(api);
    await api.stop();
    const before = await world();
    const add = await run(conf, 'add');
    expect(add.json).toMatchObject({ code: 11 });
    expect(await world()).toEqual(before);
  });

  it('a readinessindicatorfile that does not appear is code 11 and changes nothing', async () => {
    const api = await startApi();
    const ready = join(fx.tmpDir, 'ready');
    const conf = setup(api, { readinessindicatorfile: ready, readinessTimeoutMs: 300 });
    api.addPod('default', 'samplepod');
    const before = await world();
    const add = await run(conf, 'add');
    expect(add.json).toMatchObject({ code: 11 });
    expect(add.json.msg).toContain(ready);
    expect(await world()).toEqual(before);
    writeFileSync(ready, '');
    expect((await run(conf, 'add')).exitCode).toBe(0);
    expect((await run(conf, 'del')).exitCode).toBe(0);
  });

  it('a stalled API server fails within apiTimeoutMs', async () => {
    const api = await startApi();
    const conf = setup(api, { apiTimeoutMs: 500 });
    api.addPod('default', 'samplepod');
    api.stall();
    const started = Date.now();
    const add = await run(conf, 'add');
    expect(add.json).toMatchObject({ code: 11 });
    expect(add.json.msg).toContain('500 ms');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('a bad annotation entry is code 7 naming it; a missing NAD is code 11 naming it', async () => {
    const api = await startApi();
    const conf = setup(api);
    api.addPod('default', 'samplepod', { 'k8s.v1.cni.cncf.io/networks': 'storage-net@this-is-far-too-long' });
    const before = await world();
    const bad = await run(conf, 'add');
    expect(bad.json).toMatchObject({ code: 7 });
    expect(bad.json.msg).toContain('this-is-far-too-long');
    api.addPod('default', 'samplepod', { 'k8s.v1.cni.cncf.io/networks': 'no-such-net' });
    const missing = await run(conf, 'add');
    expect(missing.json).toMatchObject({ code: 11 });
    expect(missing.json.msg).toContain('default/no-such-net');
    expect(await world()).toEqual(before);
  });

  it('namespaceIsolation refuses another namespace\'s NAD but allows default and globalNamespaces', async () => {
    const api = await startApi();
    const conf = setup(api, { namespaceIsolation: true, globalNamespaces: ['shared'] });
    api.addNad('other', 'storage-net', storageNad());
    api.addNad('shared', 'storage-net', storageNad());
    api.addPod('default', 'samplepod', { 'k8s.v1.cni.cncf.io/networks': 'other/storage-net' });
    const refused = await run(conf, 'add', { args: { ...POD_ARGS } });
    expect(refused.json).toMatchObject({ code: 7 });
    expect(refused.json.msg).toContain('other/storage-net');
    api.addPod('default', 'samplepod', { 'k8s.v1.cni.cncf.io/networks': 'shared/storage-net' });
    const ok = await run(conf, 'add');
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect((await run(conf, 'del')).exitCode).toBe(0);
  });

  it('JSON form: default-route moves the pod default route; ips, mac and cni-args reach the delegates', async () => {
    const api = await startApi();
    const conf = setup(api);
    api.addNad('default', 'storage-net', storageNad());
    api.addNad('default', 'static-net', {
      cniVersion: '1.0.0',
      name: 'static-net',
            // Capabilities are declared per plugin (libcni); the IPAM gets its parent's runtimeConfig.
      plugins: [{ type: 'macvlan', master: 'eth1', capabilities: { mac: true, ips: true }, ipam: { type: 'static', addresses: [{ address: '172.16.0.99/24' }] } }],
    });
    api.addNad('default', 'gw-net', {
      cniVersion: '1.0.0',
      name: 'gw-net',
      plugins: [{ type: 'macvlan', master: 'eth1', ipam: { type: 'whereabouts', range: '172.16.0.0/24', range_start: '172.16.0.10', gateway: '172.16.0.1', data_dir: paths().pools } }],
    });
    api.addNad('default', 'args-net', {
      cniVersion: '1.0.0',
      name: 'args-net',
      plugins: [{ type: 'macvlan', master: 'eth1', ipam: { type: 'static', addresses: [{ address: '172.16.0.98/24' }] } }],
    });
    api.addPod('default', 'samplepod', {
      'k8s.v1.cni.cncf.io/networks': JSON.stringify([
        { name: 'gw-net', interface: 'data', 'default-route': ['172.16.0.1'] },
        { name: 'static-net', ips: ['172.16.0.50/24'], mac: '02:00:00:00:00:2a' },
        { name: 'args-net', 'cni-args': { ips: ['172.16.0.60/24'] } },
      ]),
    });
    const add = await run(conf, 'add');
    expect(add.exitCode, add.stderr).toBe(0);
    const snap = await snapshot(fx.pod);
    const main = routesInTable(snap.routes4, 'main');
    expect(main.filter((r) => r.dst === 'default')).toEqual([expect.objectContaining({ gateway: '172.16.0.1', dev: 'data' })]);
    // Attachment i is net<i> unless it asks for a name.
    expect(snap.links.map((l) => l.ifname).sort()).toEqual(['data', 'eth0', 'lo', 'net2', 'net3']);
    expect(addressesOf(snap, 'net2', { scope: 'global' })).toEqual(['172.16.0.50/24']);
    expect(findLink(snap, 'net2')!.address).toBe('02:00:00:00:00:2a');
    expect(addressesOf(snap, 'net3', { scope: 'global' })).toEqual(['172.16.0.60/24']);
    const status = JSON.parse(api.getPod('default', 'samplepod')!.metadata.annotations[STATUS]);
    expect(status.map((s: { interface: string; default?: boolean }) => [s.interface, s.default ?? false])).toEqual([
      ['eth0', false], ['data', true], ['net2', false], ['net3', false],
    ]);
    const del = await run(conf, 'del');
    expect(del.exitCode, del.stderr).toBe(0);
    expect((await snapshot(fx.pod)).links.map((l) => l.ifname)).toEqual(['lo']);
    expect(allocations()).toEqual({});
  });

  it('pods in systemNamespaces get no defaultNetworks; others do', async () => {
    const api = await startApi();
    const p = paths();
    const conf = setup(api, { defaultNetworks: ['storage-net'] });
    api.addPod('kube-system', 'samplepod');
    writeFileSync(join(p.confDir, '20-storage.conflist'), JSON.stringify(storageNad()));
    const sys = await run(conf, 'add', { args: { ...POD_ARGS, K8S_POD_NAMESPACE: 'kube-system' } });
    expect(sys.exitCode, sys.stderr).toBe(0);
    expect((await snapshot(fx.pod)).links.map((l) => l.ifname).sort()).toEqual(['eth0', 'lo']);
    expect((await run(conf, 'del', { args: { ...POD_ARGS, K8S_POD_NAMESPACE: 'kube-system' } })).exitCode).toBe(0);
    api.addPod('default', 'samplepod');
    const add = await run(conf, 'add');
    expect(add.exitCode, add.stderr).toBe(0);
    expect((await snapshot(fx.pod)).links.map((l) => l.ifname).sort()).toEqual(['eth0', 'lo', 'net1']);
    expect((await run(conf, 'del')).exitCode).toBe(0);
  });

  it('DEL keeps going past a failing attachment, reports it, and keeps the cache for the retry', async () => {
    const api = await startApi();
    const conf = setup(api);
    api.addNad('default', 'storage-net', storageNad());
    api.addPod('default', 'samplepod', { 'k8s.v1.cni.cncf.io/networks': 'storage-net,storage-net@storage' });
    expect((await run(conf, 'add')).exitCode).toBe(0);
    // net1's chain now names a plugin that is nowhere: its DEL must fail.
    const file = join(paths().cniDir, cacheFiles()[0]!);
    const cached = JSON.parse(readFileSync(file, 'utf8'));
    const realSbr = cached.attachments[1].list.plugins[1];
    cached.attachments[1].list.plugins[1] = { type: 'no-such-plugin' };
    writeFileSync(file, JSON.stringify(cached));
    const del = await run(conf, 'del');
    expect(del.exitCode).not.toBe(0);
    expect(del.json.msg).toContain('net1');
    expect(del.json.msg).toContain('no-such-plugin');
    // Everything else is gone, net1's macvlan and address too (its chain went on past sbr).
    expect((await snapshot(fx.pod)).links.map((l) => l.ifname)).toEqual(['lo']);
    expect(hostLocalLeases()).toEqual([]);
    expect(allocations()).toEqual({});
    expect(cacheFiles()).toHaveLength(1);
    cached.attachments[1].list.plugins[1] = realSbr;
    writeFileSync(file, JSON.stringify(cached));
    const retry = await run(conf, 'del');
    expect(retry.exitCode, retry.stderr).toBe(0);
    expect(cacheFiles()).toEqual([]);
  });

  it('DEL with no cache and no API server is an error naming the container', async () => {
    const api = await startApi();
    const conf = setup(api);
    await api.stop();
    const del = await run(conf, 'del', { containerId: 'lost-container' });
    expect(del.exitCode).not.toBe(0);
    expect(del.json.msg).toContain('lost-container');
  });

  it('DEL with no cache of a pod that is gone removes the cluster network', async () => {
    const api = await startApi();
    const conf = setup(api);
    api.addPod('default', 'samplepod');
    expect((await run(conf, 'add')).exitCode).toBe(0);
    const { rmSync } = await import('node:fs');
    rmSync(paths().cniDir, { recursive: true });
    api.deletePod('default', 'samplepod');
    const del = await run(conf, 'del');
    expect(del.exitCode, del.stderr).toBe(0);
    expect((await snapshot(fx.pod)).links.map((l) => l.ifname)).toEqual(['lo']);
    expect(hostLocalLeases()).toEqual([]);
  });
});

describe('GC and STATUS (run directly: libcni 1.1.2 has neither)', () => {
  it('GC drops cache entries of attachments the runtime no longer has', async () => {
    const api = await startApi();
    const conf = setup(api);
    api.addPod('default', 'samplepod');
    expect((await run(conf, 'add', { containerId: 'keep' })).exitCode).toBe(0);
    const other = await fx.newPod();
    expect((await run(conf, 'add', { containerId: 'stale', netns: other })).exitCode).toBe(0);
    expect(cacheFiles().sort()).toEqual(['keep-eth0.json', 'stale-eth0.json']);
    const gc = await runPluginDirect(
      multinicBin(),
      { CNI_COMMAND: 'GC', CNI_PATH: cniPathFor() },
      { ...conf, cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] },
      { netns: fx.node },
    );
    expect(gc.exitCode, gc.stdout).toBe(0);
    expect(cacheFiles()).toEqual(['keep-eth0.json']);
    const status = await runPluginDirect(multinicBin(), { CNI_COMMAND: 'STATUS', CNI_PATH: cniPathFor() }, { ...conf, cniVersion: '1.1.0' }, { netns: fx.node });
    expect(status.exitCode, status.stdout).toBe(0);
    const notReady = await runPluginDirect(
      multinicBin(),
      { CNI_COMMAND: 'STATUS', CNI_PATH: cniPathFor() },
      { ...conf, cniVersion: '1.1.0', readinessindicatorfile: join(fx.tmpDir, 'no-such-file') },
      { netns: fx.node },
    );
    expect(notReady.json).toMatchObject({ code: 50 });
    expect((await run(conf, 'del', { containerId: 'keep' })).exitCode).toBe(0);
  });
});
