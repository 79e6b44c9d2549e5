/**
 * Which store serves a pool, from the IPAM config's `datastore`: the node's files, etcd, or
 * whereabouts' Kubernetes resources. The cluster stores are imported when chosen, so an ADD
 * on the file store evaluates none of their code.
 */
import type { EtcdConfig } from './etcd-client.js';
import { FileStore } from './file-store.js';
import type { IpamStore } from './store.js';

export type StoreConfig =
  | { datastore: 'file'; dataDir: string }
  | { datastore: 'kubernetes'; kubeconfig: string; timeoutMs: number }
  | { datastore: 'etcd'; etcd: EtcdConfig; prefix?: string; timeoutMs: number };

export type OpenStore = IpamStore & { close?(): void };

export async function openStore(c: StoreConfig): Promise<OpenStore> {
  switch (c.datastore) {
    case 'file':
      return new FileStore(c.dataDir);
    case 'etcd': {
      const { EtcdStore } = await import('./etcd-store.js');
      return new EtcdStore({ ...c.etcd, prefix: c.prefix, timeoutMs: c.timeoutMs });
    }
    case 'kubernetes': {
      const [{ KubernetesStore, kubeconfigNamespace }, { KubeClient }, { loadClientConfig }] = await Promise.all([
        import('./k8s-store.js'),
        import('../delegate/k8s/client.js'),
        import('../delegate/k8s/kubeconfig.js'),
      ]);
      const client = new KubeClient(loadClientConfig(c.kubeconfig), c.timeoutMs);
      return new KubernetesStore({ client, namespace: kubeconfigNamespace(c.kubeconfig), timeoutMs: c.timeoutMs });
    }
  }
}
