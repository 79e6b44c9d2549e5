/**
 * The documents a store holds, exactly as whereabouts' custom resources are shaped, so a pool
 * moves between a node's files and a cluster unchanged: IPPool (one per range and network)
 * and OverlappingRangeIPReservation (one per address held in a network with overlapping
 * ranges enabled). Names follow whereabouts' IPPoolName/normalizeRange and NormalizeIP.
 */

export const API_VERSION = 'whereabouts.cni.cncf.io/v1alpha1';
export const POOL_KIND = 'IPPool';
export const RESERVATION_KIND = 'OverlappingRangeIPReservation';

/** One allocated address, keyed in the pool by its offset from the network address. */
export interface IPAllocation {
  /** the container ID */
  id: string;
  /** "namespace/name" of the pod; empty when the runtime gave none */
  podref: string;
  ifname?: string;
}

export type Allocations = Record<string, IPAllocation>;

export interface ObjectMeta {
  name: string;
  namespace?: string;
  [key: string]: unknown;
}

export interface IPPool {
  apiVersion: typeof API_VERSION;
  kind: typeof POOL_KIND;
  metadata: ObjectMeta;
  spec: { range: string; allocations: Allocations };
}

export interface OverlappingRangeIPReservation {
  apiVersion: typeof API_VERSION;
  kind: typeof RESERVATION_KIND;
  metadata: ObjectMeta;
  spec: { containerid?: string; podref: string; ifname?: string };
}

/**
 * What a pool or reservation may be called: a Kubernetes object name's characters. It keeps
 * every name a plain file name (no '/', never '.' or '..') whatever the inputs were.
 */
const SAFE_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$/;

export function isSafeName(name: string): boolean {
  return SAFE_NAME.test(name);
}

/**
 * A network_name must keep pool names safe: the same characters, at most 180 of them, so that
 * the longest pool file's temp name (name, 43-character IPv6 range, ".json.tmp-<pid>") stays
 * within the 255 bytes of a file name.
 */
export const MAX_NETWORK_NAME = 180;

export function isValidNetworkName(name: string): boolean {
  return name.length <= MAX_NETWORK_NAME && SAFE_NAME.test(name);
}

function normalizeRange(range: string): string {
  const r = range.endsWith(':') ? `${range}0` : range;
  return r.replaceAll(':', '-').replaceAll('/', '-');
}

/** The IPPool name of a range: "<network_name>-" when named, then the range with ':' and '/' as '-'. */
export function poolName(networkName: string, cidr: string): string {
  const base = normalizeRange(cidr);
  return networkName ? `${networkName}-${base}` : base;
}

/** The OverlappingRangeIPReservation name of an address, as whereabouts' NormalizeIP. */
export function reservationName(networkName: string, ip: string): string {
  const base = (ip.endsWith(':') ? `${ip}0` : ip).replaceAll(':', '-');
  return networkName ? `${networkName}-${base}` : base;
}

export function newPool(name: string, range: string): IPPool {
  return { apiVersion: API_VERSION, kind: POOL_KIND, metadata: { name }, spec: { range, allocations: {} } };
}

export function newReservation(name: string, owner: { containerId: string; podRef: string; ifName: string }): OverlappingRangeIPReservation {
  const spec: OverlappingRangeIPReservation['spec'] = { podref: owner.podRef };
  if (owner.containerId) spec.containerid = owner.containerId;
  if (owner.ifName) spec.ifname = owner.ifName;
  return { apiVersion: API_VERSION, kind: RESERVATION_KIND, metadata: { name }, spec };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks that a parsed value is an IPPool, returning why not. Entries are checked where the
 * allocator touches them, not here: this runs on every ADD against pools of 50,000 entries.
 */
export function poolShapeError(doc: unknown): string | undefined {
  if (!isObject(doc)) return 'not a JSON object';
  if (doc.kind !== POOL_KIND) return `kind is ${JSON.stringify(doc.kind)}, not ${POOL_KIND}`;
  if (!isObject(doc.metadata) || typeof doc.metadata.name !== 'string') return 'metadata.name is missing';
  if (!isObject(doc.spec) || typeof doc.spec.range !== 'string') return 'spec.range is missing';
  const allocs = doc.spec.allocations;
  if (allocs !== undefined && allocs !== null && !isObject(allocs)) return 'spec.allocations is not an object';
  return undefined;
}

/** Fills what whereabouts may leave out (a null allocations map, the apiVersion). */
export function normalizePool(doc: Record<string, unknown>): IPPool {
  const pool = doc as unknown as IPPool;
  if (!pool.apiVersion) pool.apiVersion = API_VERSION;
  if (!pool.spec.allocations) pool.spec.allocations = {};
  return pool;
}

export function reservationShapeError(doc: unknown): string | undefined {
  if (!isObject(doc)) return 'not a JSON object';
  if (doc.kind !== RESERVATION_KIND) return `kind is ${JSON.stringify(doc.kind)}, not ${RESERVATION_KIND}`;
  if (!isObject(doc.metadata) || typeof doc.metadata.name !== 'string') return 'metadata.name is missing';
  if (!isObject(doc.spec) || typeof doc.spec.podref !== 'string') return 'spec.podref is missing';
  return undefined;
}

/** An allocation entry as the allocator may trust it. */
export function isAllocation(v: unknown): v is IPAllocation {
  return isObject(v) && typeof v.id === 'string' && (v.podref === undefined || typeof v.podref === 'string');
}
