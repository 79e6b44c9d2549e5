/**
 * datastore "etcd" through the built binary against a real etcd (Debian's etcd-server) on
 * loopback: 8 "nodes" (concurrent processes, each with its own node's containers) sharing one
 * /22, etcd killed in the middle of a run and restarted, legacy keys, unreachable etcd.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdServer } from '../helpers/etcd-server.js';
import { type CniRun, multinicBin, onNodes, runPluginDirect } from '../helpers/index.js';

let etcd: EtcdServer;
beforeAll(async () => {
  etcd = await new EtcdServer().start();
});
afterAll(async () => {
  await etcd?.stop();
});

let prefixSeq = 0;
function netconf(ipam: Record<string, unknown> = {}): object {
  return {
    cniVersion: '1.0.0',
    name: 'wbnet',
    type: 'macvlan',
    ipam: { type: 'whereabouts', range: '10.80.0.0/22', datastore: 'etcd', etcd_host: `127.0.0.1:${etcd.clientPort}`, etcd_prefix: `/t${process.pid}-${prefixSeq++}`, ...ipam },
  };
}

export function ipam(command: 'ADD' | 'DEL' | 'CHECK', conf: object, id: string, node = 'node0'): Promise<CniRun> {
  return runPluginDirect(
    multinicBin(),
    {
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: '/var/run/netns/none',
      CNI_IFNAME: 'net1',
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${node};K8S_POD_NAME=pod-${id}`,
      CNI_PATH: '/opt/cni/bin',
      NODENAME: node,
    },
    conf,
    { as: 'whereabouts', timeoutMs: 60_000 },
  );
}

async function etcdDocs(prefix: string): Promise<Array<{ key: string; doc: any }>> {
  const key = Buffer.from(prefix).toString('base64');
  const end = Buffer.from(prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1)).toString('base64');
  const res = await fetch(`${etcd.endpoint}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key, range_end: end }) });
  const body = (await res.json()) as { kvs?: Array<{ key: string; value: string }> };
  return (body.kvs ?? []).map((kv) => ({ key: Buffer.from(kv.key, 'base64').toString(), doc: JSON.parse(Buffer.from(kv.value, 'base64').toString()) }));
}

function prefixOf(conf: object): string {
  return (conf as { ipam: { etcd_prefix: string } }).ipam.etcd_prefix;
}

describe('whereabouts on etcd', () => {
  it('ADD, CHECK, DEL: the IPPool document under <prefix>/ippools/<name>, a reservation per address', async () => {
    const conf = netconf({ gateway: '10.80.0.254' });
    const add = await ipam('ADD', conf, 'e1');
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(add.json.ips).toEqual([{ address: '10.80.0.1/22', gateway: '10.80.0.254' }]);
    const docs = await etcdDocs(prefixOf(conf) + '/');
    expect(docs.map((d) => d.key).sort()).toEqual([`${prefixOf(conf)}/ippools/10.80.0.0-22`, `${prefixOf(conf)}/overlappingrangeipreservations/10.80.0.1`]);
    const pool = docs.find((d) => d.key.includes('/ippools/'))!.doc;
    expect(pool).toEqual({
      apiVersion: 'whereabouts.cni.cncf.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: '10.80.0.0-22' },
      spec: { range: '10.80.0.0/22', allocations: { '1': { id: 'e1', podref: 'node0/pod-e1', ifname: 'net1' } } },
    });
    expect((await ipam('CHECK', { ...conf, prevResult: add.json }, 'e1')).exitCode).toBe(0);
    expect((await ipam('DEL', conf, 'e1')).exitCode).toBe(0);
    const after = await etcdDocs(prefixOf(conf) + '/');
    expect(after.map((d) => d.key)).toEqual([`${prefixOf(conf)}/ippools/10.80.0.0-22`]);
    expect(after[0]!.doc.spec.allocations).toEqual({});
  });

  it('8 nodes allocate 500 addresses from one /22 concurrently, then release them: 0 duplicates, 0 leaks', async () => {
    const conf = netconf();
    const adds = await onNodes(500, 8, (i, node) => ipam('ADD', conf, `c${i}`, node));
    expect(adds.filter((r) => r.exitCode !== 0).map((r) => r.stdout + r.stderr)).toEqual([]);
    const addrs = adds.map((r) => r.json.ips[0].address as string);
    expect(new Set(addrs).size).toBe(500);
    const pool = (await etcdDocs(`${prefixOf(conf)}/ippools/`))[0]!.doc;
    expect(Object.keys(pool.spec.allocations)).toHaveLength(500);
    expect((await etcdDocs(`${prefixOf(conf)}/overlappingrangeipreservations/`)).length).toBe(500);

    // release every other one concurrently while the rest stay
    const dels = await onNodes(250, 8, (i, node) => ipam('DEL', conf, `c${i * 2}`, node));
    expect(dels.filter((r) => r.exitCode !== 0).map((r) => r.stdout)).toEqual([]);
    const left = (await etcdDocs(`${prefixOf(conf)}/ippools/`))[0]!.doc.spec.allocations as Record<string, { id: string }>;
    expect(Object.values(left).map((a) => a.id).sort()).toEqual(Array.from({ length: 250 }, (_, i) => `c${i * 2 + 1}`).sort());
    expect((await etcdDocs(`${prefixOf(conf)}/overlappingrangeipreservations/`)).length).toBe(250);
    await onNodes(250, 8, (i, node) => ipam('DEL', conf, `c${i * 2 + 1}`, node));
    expect((await etcdDocs(`${prefixOf(conf)}/ippools/`))[0]!.doc.spec.allocations).toEqual({});
    expect(await etcdDocs(`${prefixOf(conf)}/overlappingrangeipreservations/`)).toEqual([]);
  });

  it('etcd killed in the middle of a run and restarted: every ADD succeeded with a unique address or failed with code 11; the pool matches the pods', async () => {
    const conf = netconf({ datastore_timeout_ms: 1500 });
    const started = Date.now();
    const outage = (async () => {
      await new Promise((r) => setTimeout(r, 1200));
      await etcd.kill();
      await new Promise((r) => setTimeout(r, 2500));
      await etcd.start();
    })();
    const adds = await onNodes(240, 8, async (i, node) => {
      const t = Date.now();
      const r = await ipam('ADD', conf, `k${i}`, node);
      return { r, ms: Date.now() - t };
    });
    await outage;
    const failed = adds.map((a, i) => ({ ...a, i })).filter((a) => a.r.exitCode !== 0);
    const ok = adds.map((a, i) => ({ ...a, i })).filter((a) => a.r.exitCode === 0);
    expect(Date.now() - started).toBeLessThan(120_000);
    // some failed during the outage, all of them with code 11, each within its deadline (+ process start)
    expect(failed.length).toBeGreaterThan(0);
    expect(ok.length).toBeGreaterThan(0);
    for (const f of failed) {
      expect(f.r.json?.code, f.r.stdout + f.r.stderr).toBe(11);
      expect(f.ms).toBeLessThan(1500 + 2500);
    }
    const addrs = ok.map((a) => a.r.json.ips[0].address as string);
    expect(new Set(addrs).size).toBe(addrs.length);
    // the runtime calls DEL after a failed ADD; then the pool holds exactly the running pods
    const dels = await onNodes(failed.length, 8, (j, node) => ipam('DEL', conf, `k${failed[j]!.i}`, node));
    expect(dels.filter((r) => r.exitCode !== 0).map((r) => r.stdout)).toEqual([]);
    const allocs = (await etcdDocs(`${prefixOf(conf)}/ippools/`))[0]!.doc.spec.allocations as Record<string, { id: string }>;
    expect(Object.values(allocs).map((a) => a.id).sort()).toEqual(ok.map((a) => `k${a.i}`).sort());
    const byId = new Map(Object.entries(allocs).map(([off, a]) => [a.id, Number(off)]));
    for (const a of ok) {
      const ip = (a.r.json.ips[0].address as string).split('/')[0]!;
      const [, , c, d] = ip.split('.').map(Number);
      expect(byId.get(`k${a.i}`)).toBe(c! * 256 + d!);
    }
    const reservations = await etcdDocs(`${prefixOf(conf)}/overlappingrangeipreservations/`);
    expect(reservations.map((r) => r.doc.spec.podref).sort()).toEqual(ok.map((a) => `node${a.i % 8}/pod-k${a.i}`).sort());
  });

  it('etcd unreachable: ADD fails with code 11 within datastore_timeout_ms; STATUS is code 50', async () => {
    const conf = netconf({ etcd_host: '127.0.0.1:1', datastore_timeout_ms: 800 });
    const t = Date.now();
    const add = await ipam('ADD', conf, 'u1');
    expect(Date.now() - t).toBeLessThan(800 + 1500);
    expect(add.exitCode).not.toBe(0);
    expect(add.json.code).toBe(11);
    expect(add.json.msg).toMatch(/etcd/);
    const status = await runPluginDirect(multinicBin(), { CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, { ...conf, cniVersion: '1.1.0' }, { as: 'whereabouts' });
    expect(status.json?.code, status.stdout).toBe(50);
  });
});
