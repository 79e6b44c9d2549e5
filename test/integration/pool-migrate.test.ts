/**
 * `multinic pool` on every store through the built binary: migrate a node's file pools into
 * etcd and into Kubernetes without losing an allocation, list/show/release there, and `pool gc`
 * releasing only allocations whose pods are gone.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdServer } from '../helpers/etcd-server.js';
import { FakeApiServer } from '../helpers/fake-apiserver.js';
import { multinicBin, processTmpRoot, run, runPluginDirect } from '../helpers/index.js';

const NS = 'kube-system';
let api: FakeApiServer;
let etcd: EtcdServer;
let kubeconfig: string;
const tmp = join(processTmpRoot(), `pool-migrate-${process.pid}`);

beforeAll(async () => {
  mkdirSync(tmp, { recursive: true });
  [api, etcd] = await Promise.all([new FakeApiServer().start(), new EtcdServer().start()]);
  kubeconfig = api.writeKubeconfig(tmp, { token: 'good-token' });
});
afterAll(async () => {
  await Promise.all([api?.stop(), etcd?.stop()]);
});

async function fileAdds(dataDir: string, ids: string[]): Promise<void> {
  for (const id of ids) {
    const r = await runPluginDirect(
      multinicBin(),
      { CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_NETNS: '/var/run/netns/none', CNI_IFNAME: 'net1', CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id}`, CNI_PATH: '/opt/cni/bin' },
      { cniVersion: '1.0.0', name: 'n', type: 'macvlan', ipam: { type: 'whereabouts', range: '10.82.0.0/24', network_name: 'mig', data_dir: dataDir } },
      { as: 'whereabouts' },
    );
    expect(r.exitCode, r.stdout).toBe(0);
  }
}

const pool = (...args: string[]) => run([multinicBin(), 'pool', ...args], { timeoutMs: 30_000 });

describe('multinic pool on the cluster stores', () => {
  it('migrate --from file --to kubernetes, then to etcd: every allocation arrives; a second node merges; list and release work there', async () => {
    const node1 = join(tmp, 'node1');
    const node2 = join(tmp, 'node2');
    await fileAdds(node1, ['a', 'b', 'c']);
    await fileAdds(node2, ['d']); // also .1 on node2's own file pool: a clash in the cluster

    const k8s = ['--datastore', 'kubernetes', '--kubeconfig', kubeconfig];
    const m1 = await pool('migrate', '--from', 'file', '--to', 'kubernetes', '--data-dir', node1, '--kubeconfig', kubeconfig);
    expect(m1.exitCode, m1.stderr).toBe(0);
    expect(m1.stdout).toMatch(/3 allocation\(s\) added/);
    const stored = api.getWhereabouts('ippools', NS, 'mig-10.82.0.0-24')!;
    expect(Object.entries(stored.spec.allocations).map(([k, v]: [string, any]) => `${k}=${v.id}`)).toEqual(['1=a', '2=b', '3=c']);
    expect(api.listWhereabouts('overlappingrangeipreservations', NS).map((r) => r.metadata.name).sort()).toEqual(['mig-10.82.0.1', 'mig-10.82.0.2', 'mig-10.82.0.3']);
    // again: idempotent
    expect((await pool('migrate', '--to', 'kubernetes', '--data-dir', node1, '--kubeconfig', kubeconfig)).stdout).toMatch(/0 allocation\(s\) added, 3 already there/);
    // node2's .1 is a's in the cluster: refused, nothing written
    const clash = await pool('migrate', '--to', 'kubernetes', '--data-dir', node2, '--kubeconfig', kubeconfig);
    expect(clash.exitCode).toBe(1);
    expect(clash.stderr).toMatch(/mig-10\.82\.0\.1 is held by default\/a in kubernetes:.*, by default\/d in file:/);
    expect(Object.keys(api.getWhereabouts('ippools', NS, 'mig-10.82.0.0-24')!.spec.allocations)).toEqual(['1', '2', '3']);

    const list = await pool('list', ...k8s);
    expect(list.stdout).toMatch(/mig-10\.82\.0\.0-24\s+10\.82\.0\.0\/24\s+3/);
    const rel = await pool('release', '10.82.0.2', ...k8s);
    expect(rel.stdout).toMatch(/released mig-10\.82\.0\.0-24 10\.82\.0\.2 \(default\/b\)/);
    expect(Object.keys(api.getWhereabouts('ippools', NS, 'mig-10.82.0.0-24')!.spec.allocations)).toEqual(['1', '3']);

    const etcdArgs = ['--etcd-host', `127.0.0.1:${etcd.clientPort}`];
    const m2 = await pool('migrate', '--from', 'file', '--to', 'etcd', '--data-dir', node1, ...etcdArgs);
    expect(m2.exitCode, m2.stderr).toBe(0);
    const show = await pool('show', 'mig-10.82.0.0-24', '--datastore', 'etcd', ...etcdArgs);
    expect(show.stdout).toMatch(/10\.82\.0\.1\s+default\/a\s+a\s+net1/);
    expect(show.stdout).toMatch(/3 allocated/);
    const exported = await pool('export', '--datastore', 'etcd', ...etcdArgs);
    expect(exported.stdout).toMatch(/kind: "?OverlappingRangeIPReservation/);
  });

  it('gc releases what belongs to deleted pods, keeps live and re-created pods, and never frees on API errors', async () => {
    const k8s = ['--datastore', 'kubernetes', '--kubeconfig', kubeconfig];
    const conf = { cniVersion: '1.0.0', name: 'n', type: 'macvlan', ipam: { type: 'whereabouts', range: '10.83.0.0/24', network_name: 'gc', datastore: 'kubernetes', kubernetes: { kubeconfig } } };
    for (const id of ['live', 'gone', 'again']) {
      if (id !== 'gone') api.addPod('default', id);
      const r = await runPluginDirect(
        multinicBin(),
        { CNI_COMMAND: 'ADD', CNI_CONTAINERID: `ctr-${id}`, CNI_NETNS: '/var/run/netns/none', CNI_IFNAME: 'net1', CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id}`, CNI_PATH: '/opt/cni/bin' },
        conf,
        { as: 'whereabouts' },
      );
      expect(r.exitCode, r.stdout).toBe(0);
    }
    const dry = await pool('gc', '--dry-run', ...k8s);
    expect(dry.stdout).toMatch(/would release gc-10\.83\.0\.0-24 10\.83\.0\.2 \(default\/gone, ctr-gone\)/);
    expect(dry.stdout).not.toMatch(/live|again/);

    // the API failing on the pod lookup: nothing is freed
    api.fail(500, { method: 'GET', path: /\/pods\/gone$/ });
    expect((await pool('gc', ...k8s)).stdout).not.toMatch(/gc-/);
    api.clearFaults();

    const gc = await pool('gc', ...k8s);
    expect(gc.exitCode, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/released gc-10\.83\.0\.0-24 10\.83\.0\.2/);
    expect(gc.stdout).toMatch(/deleted reservation gc-10\.83\.0\.2|released/);
    const allocs = api.getWhereabouts('ippools', NS, 'gc-10.83.0.0-24')!.spec.allocations;
    expect(Object.values(allocs).map((a: any) => a.podref).sort()).toEqual(['default/again', 'default/live']);
    expect(api.listWhereabouts('overlappingrangeipreservations', NS).filter((r) => r.metadata.name.startsWith('gc-')).map((r) => r.spec.podref).sort()).toEqual(['default/again', 'default/live']);
  });
});
