/**
 * Pools as whereabouts' own custom resources (whereabouts.cni.cncf.io/v1alpha1), in the
 * namespace of the kubeconfig's current context (kube-system when it names none), as
 * whereabouts finds them:
 *
 *   /apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/<ns>/ippools/<pool name>
 *   /apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/<ns>/overlappingrangeipreservations/<name>
 *
 * Writes are conditional: an update carries the resourceVersion it read (409 when another
 * writer got there first), a create fails when the object exists. There is no lease: a
 * conflict runs the transaction again on fresh reads (optimistic.ts), so multinic and
 * whereabouts (whose pool patches test the resourceVersion too) can share pools.
 *
 * Kubernetes has no multi-object transaction, so a commit writes in store.ts's order: new
 * reservations first (a create that fails means another pod holds the address: nothing was
 * written), then pools, then deletions of released reservations. A conflict or failure after
 * the first write is a partial commit, which the runner takes back (compensate) before it
 * retries or gives up: an ADD that fails leaves neither a reservation nor a pool entry.
 */
import { readFileSync } from 'node:fs';
import { CniError, ErrorCode } from '../cni/errors.js';
import { isRecord } from '../cni/types.js';
import { type KubeClient, KubeError, type Response } from '../delegate/k8s/client.js';
import { IN_CLUSTER, SERVICE_ACCOUNT_DIR, parseYamlSubset } from '../delegate/k8s/kubeconfig.js';
import { API_VERSION, type IPPool, type OverlappingRangeIPReservation, POOL_KIND, RESERVATION_KIND, isSafeName, normalizePool, poolShapeError, reservationShapeError } from './documents.js';
import { type CommitOp, type CommitOutcome, type DocKind, type OptimisticBackend, StoreUnavailable, type Versioned, runOptimistic } from './optimistic.js';
import type { IpamStore, StoreTransaction } from './store.js';

export const DEFAULT_TIMEOUT_MS = 10_000;
const GROUP_PATH = '/apis/whereabouts.cni.cncf.io/v1alpha1';
const PLURAL: Record<DocKind, string> = { pool: 'ippools', reservation: 'overlappingrangeipreservations' };
const KIND: Record<DocKind, string> = { pool: POOL_KIND, reservation: RESERVATION_KIND };

/** The namespace whereabouts uses: the current context's, else kube-system. */
export function kubeconfigNamespace(kubeconfig: string, saDir = SERVICE_ACCOUNT_DIR): string {
  try {
    if (kubeconfig === IN_CLUSTER) return readFileSync(`${saDir}/namespace`, 'utf8').trim() || 'kube-system';
    const text = readFileSync(kubeconfig, 'utf8');
    const doc = text.trimStart().startsWith('{') ? (JSON.parse(text) as unknown) : parseYamlSubset(text, kubeconfig);
    if (!isRecord(doc)) return 'kube-system';
    const current = doc['current-context'];
    const ctx = (Array.isArray(doc.contexts) ? doc.contexts : []).find((c) => isRecord(c) && c.name === current);
    const ns = isRecord(ctx) && isRecord(ctx.context) ? ctx.context.namespace : undefined;
    return typeof ns === 'string' && ns !== '' ? ns : 'kube-system';
  } catch {
    return 'kube-system';
  }
}

export interface KubernetesStoreOptions {
  client: KubeClient;
  namespace: string;
  timeoutMs?: number;
}

function failure(what: string, res: Response): string {
  const b = res.body;
  const reason = isRecord(b) && typeof b.reason === 'string' ? b.reason : `HTTP ${res.status}`;
  const message = isRecord(b) && typeof b.message === 'string' ? `: ${b.message}` : '';
  return `${what}: ${res.status} ${reason}${message}`;
}

export class KubernetesStore implements IpamStore, OptimisticBackend {
  readonly location: string;
  readonly client: KubeClient;
  readonly namespace: string;
  private readonly timeoutMs: number;

  constructor(opts: KubernetesStoreOptions) {
    this.client = opts.client;
    this.namespace = opts.namespace;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.location = `kubernetes:${opts.client.config.server}/namespaces/${opts.namespace}`;
  }

  close(): void {
    this.client.close();
  }

  private path(kind: DocKind, name?: string): string {
    const base = `${GROUP_PATH}/namespaces/${encodeURIComponent(this.namespace)}/${PLURAL[kind]}`;
    if (name === undefined) return base;
    if (!isSafeName(name)) throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${PLURAL[kind]} name ${JSON.stringify(name)}: not a safe object name`);
    return `${base}/${name}`;
  }

  /** One API call within the deadline; no answer, 429 and 5xx are StoreUnavailable. */
  private async call(method: string, path: string, deadline: number, body?: unknown): Promise<Response> {
    const ms = deadline - Date.now();
    if (ms <= 0) throw new StoreUnavailable(`${method} ${path}: no time left`);
    let res: Response;
    try {
      res = await this.client.request(method, path, body, 'application/json', ms);
    } catch (err) {
      if (err instanceof KubeError) throw new StoreUnavailable(err.message);
      throw err;
    }
    if (res.status === 429 || res.status >= 500) throw new StoreUnavailable(failure(`${method} ${path}`, res));
    if (res.status === 401 || res.status === 403) throw new CniError(ErrorCode.TryAgainLater, failure(`${method} ${path}`, res));
    return res;
  }

  private parse(kind: DocKind, body: unknown, where: string): IPPool | OverlappingRangeIPReservation {
    // list items come without apiVersion and kind
    const doc = isRecord(body) ? { apiVersion: API_VERSION, kind: KIND[kind], ...body } : body;
    const why = kind === 'pool' ? poolShapeError(doc) : reservationShapeError(doc);
    if (why) throw new CniError(ErrorCode.IoFailure, `${where} is not an ${KIND[kind]} (${why})`);
    return kind === 'pool' ? normalizePool(doc as Record<string, unknown>) : (doc as OverlappingRangeIPReservation);
  }

  async read(kind: DocKind, name: string, deadline: number): Promise<Versioned | undefined> {
    const path = this.path(kind, name);
    const res = await this.call('GET', path, deadline);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw new CniError(ErrorCode.TryAgainLater, failure(`GET ${path}`, res));
    const doc = this.parse(kind, res.body, path);
    return { doc, version: String(doc.metadata.resourceVersion ?? '') };
  }

  private body(op: CommitOp, doc: IPPool | OverlappingRangeIPReservation): unknown {
    const metadata: Record<string, unknown> = { ...doc.metadata, name: op.name, namespace: this.namespace };
    if (op.expect === null) {
      for (const k of ['resourceVersion', 'uid', 'creationTimestamp', 'managedFields', 'generation', 'selfLink']) delete metadata[k];
    } else {
      metadata.resourceVersion = op.expect;
    }
    return { ...doc, apiVersion: API_VERSION, kind: KIND[op.kind], metadata };
  }

  /** Writes one document; false on a conflict (it moved, or exists when created, or is gone when updated). */
  private async write(op: CommitOp, deadline: number): Promise<boolean> {
    const doc = op.doc!;
    if (doc === null) {
      if (op.expect === null) return true;
      const path = this.path(op.kind, op.name);
      const res = await this.call('DELETE', path, deadline, { kind: 'DeleteOptions', apiVersion: 'v1', preconditions: { resourceVersion: op.expect } });
      if (res.status === 200 || res.status === 202 || res.status === 404) return true;
      if (res.status === 409) return false;
      throw new CniError(ErrorCode.TryAgainLater, failure(`DELETE ${path}`, res));
    }
    if (op.expect === null) {
      const path = this.path(op.kind);
      const res = await this.call('POST', path, deadline, this.body(op, doc));
      if (res.status === 200 || res.status === 201) return true;
      if (res.status === 409) return false;
      throw new CniError(ErrorCode.TryAgainLater, failure(`POST ${path}`, res));
    }
    const path = this.path(op.kind, op.name);
    const res = await this.call('PUT', path, deadline, this.body(op, doc));
    if (res.status === 200) return true;
    if (res.status === 409 || res.status === 404) return false;
    throw new CniError(ErrorCode.TryAgainLater, failure(`PUT ${path}`, res));
  }

  async commit(ops: CommitOp[], deadline: number): Promise<CommitOutcome> {
    const writes = ops.filter((op) => op.doc !== undefined);
    const order = [
      ...writes.filter((op) => op.kind === 'reservation' && op.doc !== null),
      ...writes.filter((op) => op.kind === 'pool'),
    ];
    let written = 0;
    for (const op of order) {
      let ok: boolean;
      try {
        ok = await this.write(op, deadline);
      } catch (err) {
        if (written === 0 && err instanceof CniError) throw err;
        throw err instanceof StoreUnavailable ? err : new StoreUnavailable((err as Error).message);
      }
      if (!ok) return written === 0 ? 'conflict' : 'partial-conflict';
      written++;
    }
    // released reservations last; one that moved on (held anew) is not ours to delete
    for (const op of writes) {
      if (op.kind !== 'reservation' || op.doc !== null) continue;
      await this.write(op, deadline).catch(() => false);
    }
    return 'ok';
  }

  async transaction<T>(fn: (tx: StoreTransaction) => Promise<T>): Promise<T> {
    try {
      return await runOptimistic(this, fn, { timeoutMs: this.timeoutMs });
    } catch (err) {
      if (err instanceof StoreUnavailable) throw new CniError(ErrorCode.TryAgainLater, `IPAM store ${this.location}: ${err.message}`);
      throw err;
    }
  }

  private async listKind<T>(kind: DocKind): Promise<T[]> {
    const path = this.path(kind);
    let res: Response;
    try {
      res = await this.call('GET', path, Date.now() + this.timeoutMs);
    } catch (err) {
      if (err instanceof StoreUnavailable) throw new CniError(ErrorCode.TryAgainLater, `IPAM store ${this.location}: ${err.message}`);
      throw err;
    }
    if (res.status !== 200 || !isRecord(res.body) || !Array.isArray(res.body.items)) throw new CniError(ErrorCode.TryAgainLater, failure(`GET ${path}`, res));
    return res.body.items.map((item, i) => this.parse(kind, item, `${path} item ${i}`) as T).sort((a, b) => ((a as IPPool).metadata.name < (b as IPPool).metadata.name ? -1 : 1));
  }

  listPools(): Promise<IPPool[]> {
    return this.listKind<IPPool>('pool');
  }

  listReservations(): Promise<OverlappingRangeIPReservation[]> {
    return this.listKind<OverlappingRangeIPReservation>('reservation');
  }

  async checkReady(): Promise<void> {
    try {
      const res = await this.call('GET', this.path('pool'), Date.now() + Math.min(this.timeoutMs, 5000));
      if (res.status !== 200) throw new Error(failure(`GET ${this.path('pool')}`, res));
    } catch (err) {
      throw new CniError(ErrorCode.PluginNotAvailable, `IPAM store ${this.location} is not usable: ${(err as Error).message}`);
    }
  }
}
