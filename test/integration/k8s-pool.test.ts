/**
 * datastore "kubernetes" through the built binary against the local API server stand-in
 * (test/helpers/fake-apiserver.ts): whereabouts' IPPool and OverlappingRangeIPReservation
 * resources in the kubeconfig's namespace, conditional writes under concurrency from 8
 * "nodes", 409 storms, a stalled API (deadline, nothing half-written), 401.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { type CniRun, multinicBin, onNodes, processTmpRoot, runPluginDirect } from '../helpers/index.js';

const NS = 'wb-system';
let api: FakeApiServer;
let kubeconfig: string;

beforeAll(async () => {
  api = await new FakeApiServer().start();
  const dir = join(processTmpRoot(), `k8s-pool-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  kubeconfig = api.writeKubeconfig(dir, { token: 'good-token', namespace: NS });
});
afterAll(async () => {
  await api?.stop();
});
beforeEach(() => {
  api.clearFaults();
});

let netSeq = 0;
function netconf(ipam: Record<string, unknown> = {}): { ipam: { network_name: string; [k: string]: unknown }; [k: string]: unknown } {
  return {
    cniVersion: '1.0.0',
    name: 'wbnet',
    type: 'macvlan',
    ipam: { type: 'whereabouts', range: '10.81.0.0/22', datastore: 'kubernetes', kubernetes: { kubeconfig }, network_name: `n${netSeq++}`, ...ipam },
  };
}

function ipam(command: 'ADD' | 'DEL' | 'CHECK', conf: object, id: string, node = 'node0'): Promise<CniRun> {
  return runPluginDirect(
    multinicBin(),
    {
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: '/var/run/netns/none',
      CNI_IFNAME: 'net1',
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${node};K8S_POD_NAME=pod-${id}`,
      CNI_PATH: '/opt/cni/bin',
    },
    conf,
    { as: 'whereabouts', timeoutMs: 60_000 },
  );
}

const poolName = (net: string) => `${net}-10.81.0.0-22`;
const allocations = (net: string): Record<string, { id: string; podref: string; ifname?: string }> =>
  api.getWhereabouts('ippools', NS, poolName(net))?.spec.allocations ?? {};
const reservations = (net: string) => api.listWhereabouts('overlappingrangeipreservations', NS).filter((r) => r.metadata.name.startsWith(`${net}-`));

describe('whereabouts on Kubernetes resources', () => {
  it('ADD writes an IPPool and an OverlappingRangeIPReservation named and shaped as whereabouts, in the kubeconfig namespace', async () => {
    const conf = netconf({ gateway: '10.81.0.254' });
    const net = conf.ipam.network_name;
    const add = await ipam('ADD', conf, 'k1');
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(add.json.ips).toEqual([{ address: '10.81.0.1/22', gateway: '10.81.0.254' }]);
    const pool = api.getWhereabouts('ippools', NS, poolName(net))!;
    expect(pool).toMatchObject({ apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind: 'IPPool', metadata: { name: poolName(net), namespace: NS } });
    expect(pool.spec).toEqual({ range: '10.81.0.0/22', allocations: { '1': { id: 'k1', podref: 'node0/pod-k1', ifname: 'net1' } } });
    const res = api.getWhereabouts('overlappingrangeipreservations', NS, `${net}-10.81.0.1`)!;
    expect(res).toMatchObject({ kind: 'OverlappingRangeIPReservation', spec: { containerid: 'k1', podref: 'node0/pod-k1', ifname: 'net1' } });
    expect((await ipam('CHECK', { ...conf, prevResult: add.json }, 'k1')).exitCode).toBe(0);
    expect((await ipam('DEL', conf, 'k1')).exitCode).toBe(0);
    expect(allocations(net)).toEqual({});
    expect(reservations(net)).toEqual([]);
  });

  it('8 nodes allocate 500 addresses from one /22 concurrently, then release them: 0 duplicates, 0 leaks, conflicts resolved by retry', async () => {
    const conf = netconf();
    const net = conf.ipam.network_name;
    const conflictsBefore = api.conflicts;
    const adds = await onNodes(500, 8, (i, node) => ipam('ADD', conf, `c${i}`, node));
    expect(adds.filter((r) => r.exitCode !== 0).map((r) => r.stdout + r.stderr)).toEqual([]);
    const addrs = adds.map((r) => r.json.ips[0].address as string);
    expect(new Set(addrs).size).toBe(500);
    expect(Object.keys(allocations(net))).toHaveLength(500);
    expect(reservations(net)).toHaveLength(500);
    expect(api.conflicts).toBeGreaterThan(conflictsBefore);
    const dels = await onNodes(500, 8, (i, node) => ipam('DEL', conf, `c${i}`, node));
    expect(dels.filter((r) => r.exitCode !== 0).map((r) => r.stdout)).toEqual([]);
    expect(allocations(net)).toEqual({});
    expect(reservations(net)).toEqual([]);
  });

  it('a storm of 409s on the pool: retried with jitter until it commits, one address, no stray reservation', async () => {
    const conf = netconf();
    const net = conf.ipam.network_name;
    expect((await ipam('ADD', conf, 'first')).exitCode).toBe(0);
    api.fail(409, { method: 'PUT', path: /\/ippools\//, times: 15 });
    const add = await ipam('ADD', conf, 's1');
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(add.json.ips[0].address).toBe('10.81.0.2/22');
    expect(Object.values(allocations(net)).map((a) => a.id).sort()).toEqual(['first', 's1']);
    expect(reservations(net).map((r) => r.spec.containerid).sort()).toEqual(['first', 's1']);
  });

  it('409s that never stop: code 11 within the deadline, and the reservation it created is taken back', async () => {
    const conf = netconf({ datastore_timeout_ms: 1500 });
    const net = conf.ipam.network_name;
    expect((await ipam('ADD', conf, 'first')).exitCode).toBe(0);
    api.fail(409, { method: 'PUT', path: /\/ippools\// });
    const t = Date.now();
    const add = await ipam('ADD', conf, 'x1');
    expect(Date.now() - t).toBeLessThan(1500 + 1500);
    expect(add.json?.code, add.stdout + add.stderr).toBe(11);
    api.clearFaults();
    expect(Object.values(allocations(net)).map((a) => a.id)).toEqual(['first']);
    expect(reservations(net).map((r) => r.spec.containerid)).toEqual(['first']);
  });

  it('a pool update that never answers: code 11 by the deadline, nothing half-written', async () => {
    const conf = netconf({ datastore_timeout_ms: 2000 });
    const net = conf.ipam.network_name;
    expect((await ipam('ADD', conf, 'first')).exitCode).toBe(0);
    api.stall({ method: 'PUT', path: /\/ippools\// });
    const t = Date.now();
    const add = await ipam('ADD', conf, 'y1');
    expect(Date.now() - t).toBeLessThan(2000 + 1500);
    expect(add.json?.code, add.stdout + add.stderr).toBe(11);
    api.clearFaults();
    expect(Object.values(allocations(net)).map((a) => a.id)).toEqual(['first']);
    expect(reservations(net).map((r) => r.spec.containerid)).toEqual(['first']);
  });

  it('another writer (whereabouts) changes the pool between our read and write: no address is handed out twice', async () => {
    const conf = netconf();
    const net = conf.ipam.network_name;
    expect((await ipam('ADD', conf, 'first')).exitCode).toBe(0);
    // whereabouts takes .2 behind our back, as its own process would
    const pool = api.getWhereabouts('ippools', NS, poolName(net))!;
    api.putWhereabouts('ippools', NS, { ...pool, spec: { ...pool.spec, allocations: { ...pool.spec.allocations, '2': { id: 'wb', podref: 'x/wb' } } } });
    const add = await ipam('ADD', conf, 'z1');
    expect(add.json.ips[0].address).toBe('10.81.0.3/22');
  });

  it('a rejected token is code 11 naming the API answer', async () => {
    const dir = join(processTmpRoot(), `k8s-pool-bad-${process.pid}`);
    const bad = api.writeKubeconfig(dir, { token: 'wrong', namespace: NS });
    const add = await ipam('ADD', netconf({ kubernetes: { kubeconfig: bad }, datastore_timeout_ms: 1000 }), 'b1');
    expect(add.json?.code).toBe(11);
    expect(add.json?.msg).toMatch(/401/);
  });
});
