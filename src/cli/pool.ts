/**
 * `multinic pool …`: the operators' view of the whereabouts-compatible pools on this node.
 *
 *   pool list                         every pool: name, range, allocated addresses
 *   pool show <pool>                  a table: IP, pod, container, ifname
 *   pool release <ip> | --pod ns/name frees addresses (and their overlapping reservations)
 *   pool export [--namespace ns]      kubectl-applyable YAML of the IPPools and reservations
 *   pool import [file|-]              writes IPPools/reservations from YAML or JSON
 *   pool migrate --from file --to etcd|kubernetes
 *                                     copies this node's pools into a cluster store, merged
 *                                     with what is there (an address held by two owners stops it)
 *   pool gc --kubeconfig f            releases allocations whose pods no longer exist
 *
 * Every command works on any store: --datastore file (--data-dir), etcd (--etcd-host …) or
 * kubernetes (--kubeconfig), the IPAM config's keys as options. Every change goes through the
 * store's transaction, as ADD and DEL do (the file lock, or a conditional write).
 */
import { readFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { asCniError } from '../cni/errors.js';
import {
  API_VERSION,
  type IPAllocation,
  type IPPool,
  type OverlappingRangeIPReservation,
  POOL_KIND,
  RESERVATION_KIND,
  isAllocation,
  isSafeName,
  poolShapeError,
  reservationShapeError,
} from '../ipam/documents.js';
import { DEFAULT_DATA_DIR } from '../ipam/file-store.js';
import { type OpenStore, type StoreConfig, openStore } from '../ipam/open-store.js';
import { readStoreConfig } from '../../plugins/ipam/whereabouts/config.js';
import { parseIp } from '../ipam/ip.js';
import { addressAt, offsetOf, parseRange } from '../ipam/range.js';
import type { IpamStore } from '../ipam/store.js';

interface PoolArgs {
  'data-dir': string;
  datastore: string;
  kubeconfig?: string;
  'etcd-host'?: string;
  'etcd-username'?: string;
  'etcd-password'?: string;
  'etcd-ca-cert-file'?: string;
  'etcd-cert-file'?: string;
  'etcd-key-file'?: string;
  'etcd-prefix'?: string;
  'timeout-ms'?: number;
}

class UsageError extends Error {}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** The pool's entries with their addresses, in offset order; entries that are not offsets are skipped. */
export function poolEntries(pool: IPPool): Array<{ ip: string; key: string; entry: IPAllocation }> {
  const range = parseRange({ range: pool.spec.range });
  return Object.entries(pool.spec.allocations)
    .filter(([k, v]) => /^(0|[1-9]\d*)$/.test(k) && isAllocation(v))
    .map(([k, v]) => ({ key: k, entry: v, off: BigInt(k) }))
    .sort((a, b) => (a.off < b.off ? -1 : a.off > b.off ? 1 : 0))
    .map(({ key, entry, off }) => ({ ip: addressAt(range, off), key, entry }));
}

export async function listPools(store: IpamStore): Promise<string> {
  const pools = await store.listPools();
  if (pools.length === 0) return `no pools in ${store.location}\n`;
  return table(
    ['NAME', 'RANGE', 'ALLOCATED'],
    pools.map((p) => [p.metadata.name, p.spec.range, String(Object.keys(p.spec.allocations).length)]),
  );
}

export async function showPool(store: IpamStore, name: string): Promise<string> {
  const pool = (await store.listPools()).find((p) => p.metadata.name === name);
  if (!pool) throw new UsageError(`no pool ${JSON.stringify(name)} in ${store.location} (see multinic pool list)`);
  const rows = poolEntries(pool).map(({ ip, entry }) => [ip, entry.podref || '-', entry.id, entry.ifname ?? '-']);
  return `pool ${name}, range ${pool.spec.range}, ${rows.length} allocated\n` + table(['IP', 'POD', 'CONTAINER', 'IFNAME'], rows);
}

export interface ReleaseRequest {
  ip?: string;
  pod?: string;
  pool?: string;
}

/** Frees an address or every address of a pod; returns "pool ip" lines of what was freed. */
export async function releaseFromPools(store: IpamStore, req: ReleaseRequest): Promise<string[]> {
  if (!req.ip === !req.pod) throw new UsageError('name an address or --pod ns/name (one of them)');
  if (req.ip && !parseIp(req.ip)) throw new UsageError(`${JSON.stringify(req.ip)} is not an IP address`);
  const candidates = (await store.listPools()).filter((p) => !req.pool || p.metadata.name === req.pool);
  if (req.pool && candidates.length === 0) throw new UsageError(`no pool ${JSON.stringify(req.pool)} in ${store.location}`);
  const reservations = await store.listReservations();

  return store.transaction(async (tx) => {
    const freed: string[] = [];
    const matches: Array<{ pool: IPPool; ip: string; key: string; entry: IPAllocation }> = [];
    for (const listed of candidates) {
      const pool = await tx.getPool(listed.metadata.name);
      if (!pool) continue;
      if (req.ip) {
        const off = offsetOf(parseRange({ range: pool.spec.range }), req.ip);
        const key = off?.toString();
        const entry = key === undefined ? undefined : pool.spec.allocations[key];
        if (key !== undefined && entry) matches.push({ pool, ip: req.ip, key, entry });
      } else {
        for (const e of poolEntries(pool)) if (e.entry.podref === req.pod) matches.push({ pool, ...e });
      }
    }
    if (req.ip && new Set(matches.map((m) => m.pool.metadata.name)).size > 1) {
      throw new UsageError(`${req.ip} is allocated in several pools (${matches.map((m) => m.pool.metadata.name).join(', ')}): name one with --pool`);
    }
    const touched = new Set<IPPool>();
    for (const m of matches) {
      delete m.pool.spec.allocations[m.key];
      touched.add(m.pool);
      freed.push(`${m.pool.metadata.name} ${m.ip} (${m.entry.podref || m.entry.id})`);
      // Its reservation: "<network>-<ip>" or "<ip>", held by the same pod or container.
      const suffix = (m.ip.endsWith(':') ? `${m.ip}0` : m.ip).replaceAll(':', '-');
      for (const r of reservations) {
        const n = r.metadata.name;
        if (n !== suffix && !n.endsWith(`-${suffix}`)) continue;
        const cur = await tx.getReservation(n);
        if (!cur) continue;
        const same = (m.entry.podref && cur.spec.podref === m.entry.podref) || (cur.spec.containerid !== undefined && cur.spec.containerid === m.entry.id);
        if (same) tx.deleteReservation(n);
      }
    }
    for (const p of touched) tx.putPool(p);
    return freed;
  });
}

function cleanMetadata(meta: Record<string, unknown>, namespace: string | undefined): Record<string, unknown> {
  const m: Record<string, unknown> = { name: meta.name };
  if (namespace) m.namespace = namespace;
  return m;
}

/** The documents as kubectl-applyable YAML, one document each. */
export async function exportPools(store: IpamStore, namespace?: string): Promise<string> {
  const YAML = await import('yaml');
  const docs: unknown[] = [];
  for (const p of await store.listPools()) {
    // allocations in offset order, as whereabouts writes them
    const allocations: Record<string, IPAllocation> = {};
    for (const e of poolEntries(p)) allocations[e.key] = e.entry;
    docs.push({ apiVersion: API_VERSION, kind: POOL_KIND, metadata: cleanMetadata(p.metadata, namespace), spec: { range: p.spec.range, allocations } });
  }
  for (const r of await store.listReservations()) {
    docs.push({ apiVersion: API_VERSION, kind: RESERVATION_KIND, metadata: cleanMetadata(r.metadata, namespace), spec: r.spec });
  }
  // Offsets and pod refs are strings: quote them so YAML never reads "10" as a number.
  return docs.map((d) => YAML.stringify(d, { defaultKeyType: 'PLAIN', defaultStringType: 'QUOTE_DOUBLE' })).join('---\n');
}

/** Parses YAML or JSON holding IPPools and reservations (also as a List, as kubectl prints). */
export async function parseImport(text: string): Promise<{ pools: IPPool[]; reservations: OverlappingRangeIPReservation[] }> {
  const YAML = await import('yaml');
  const pools: IPPool[] = [];
  const reservations: OverlappingRangeIPReservation[] = [];
  const docs = YAML.parseAllDocuments(text);
  const items: unknown[] = [];
  docs.forEach((d, i) => {
    if (d.errors.length) throw new UsageError(`document ${i + 1}: ${d.errors[0]!.message.split('\n')[0]}`);
    const v = d.toJS() as unknown;
    if (v === null || v === undefined) return;
    const list = (v as { items?: unknown }).items;
    if (Array.isArray(list)) items.push(...list);
    else items.push(v);
  });
  items.forEach((doc, i) => {
    const kind = (doc as { kind?: unknown }).kind;
    const where = `item ${i + 1}`;
    if (kind === POOL_KIND) {
      const why = poolShapeError(doc);
      if (why) throw new UsageError(`${where}: not an IPPool (${why})`);
      const p = doc as IPPool;
      if (!isSafeName(p.metadata.name)) throw new UsageError(`${where}: IPPool name ${JSON.stringify(p.metadata.name)} is not a safe object name`);
      try {
        parseRange({ range: p.spec.range });
      } catch (err) {
        throw new UsageError(`${where}: IPPool ${p.metadata.name}: spec.range ${JSON.stringify(p.spec.range)}: ${(err as Error).message}`);
      }
      const allocations: Record<string, IPAllocation> = {};
      for (const [k, a] of Object.entries(p.spec.allocations ?? {})) {
        if (!/^(0|[1-9]\d*)$/.test(k) || !isAllocation(a)) throw new UsageError(`${where}: IPPool ${p.metadata.name}: allocation ${JSON.stringify(k)} is not {id, podref, ifname} at an offset`);
        allocations[k] = { id: a.id, podref: a.podref ?? '', ...(a.ifname ? { ifname: a.ifname } : {}) };
      }
      pools.push({ apiVersion: API_VERSION, kind: POOL_KIND, metadata: { name: p.metadata.name }, spec: { range: p.spec.range, allocations } });
    } else if (kind === RESERVATION_KIND) {
      const why = reservationShapeError(doc);
      if (why) throw new UsageError(`${where}: not an OverlappingRangeIPReservation (${why})`);
      const r = doc as OverlappingRangeIPReservation;
      if (!isSafeName(r.metadata.name)) throw new UsageError(`${where}: reservation name ${JSON.stringify(r.metadata.name)} is not a safe object name`);
      reservations.push({ apiVersion: API_VERSION, kind: RESERVATION_KIND, metadata: { name: r.metadata.name }, spec: r.spec });
    } else {
      throw new UsageError(`${where}: kind ${JSON.stringify(kind)} is neither ${POOL_KIND} nor ${RESERVATION_KIND}`);
    }
  });
  return { pools, reservations };
}

/** Writes the documents, replacing pools and reservations of the same names. */
export async function importPools(store: IpamStore, text: string): Promise<string> {
  const { pools, reservations } = await parseImport(text);
  await store.transaction(async (tx) => {
    for (const r of reservations) tx.putReservation(r);
    for (const p of pools) tx.putPool(p);
  });
  const n = pools.reduce((s, p) => s + Object.keys(p.spec.allocations).length, 0);
  return `imported ${pools.length} pool(s) with ${n} allocation(s) and ${reservations.length} reservation(s) into ${store.location}\n`;
}

/**
 * Copies every pool and reservation of `src` into `dst` in one transaction: a pool that exists
 * there gets the allocations it lacks; an address held there by another owner (another
 * container) stops the whole migration, naming it, with nothing written.
 */
export async function migratePools(src: IpamStore, dst: IpamStore): Promise<string> {
  const pools = await src.listPools();
  const reservations = await src.listReservations();
  let added = 0;
  let kept = 0;
  await dst.transaction(async (tx) => {
    added = 0;
    kept = 0;
    for (const r of reservations) {
      const cur = await tx.getReservation(r.metadata.name);
      if (cur && cur.spec.podref !== r.spec.podref) {
        throw new UsageError(`reservation ${r.metadata.name} is held by ${cur.spec.podref} in ${dst.location}, by ${r.spec.podref} in ${src.location}`);
      }
      if (!cur) tx.putReservation({ apiVersion: API_VERSION, kind: RESERVATION_KIND, metadata: { name: r.metadata.name }, spec: r.spec });
    }
    for (const p of pools) {
      const cur = await tx.getPool(p.metadata.name);
      if (cur && cur.spec.range !== p.spec.range) throw new UsageError(`pool ${p.metadata.name} has range ${cur.spec.range} in ${dst.location}, ${p.spec.range} in ${src.location}`);
      const pool: IPPool = cur ?? { apiVersion: API_VERSION, kind: POOL_KIND, metadata: { name: p.metadata.name }, spec: { range: p.spec.range, allocations: {} } };
      let changed = !cur;
      for (const { key, entry, ip } of poolEntries(p)) {
        const there = pool.spec.allocations[key];
        if (there && there.id !== entry.id) throw new UsageError(`${ip} of pool ${p.metadata.name} is held by ${there.podref || there.id} in ${dst.location}, by ${entry.podref || entry.id} in ${src.location}`);
        if (there) {
          kept++;
          continue;
        }
        pool.spec.allocations[key] = entry;
        added++;
        changed = true;
      }
      if (changed) tx.putPool(pool);
    }
  });
  // read back: every source allocation is there
  const after = new Map((await dst.listPools()).map((p) => [p.metadata.name, p]));
  for (const p of pools) {
    for (const { key, entry, ip } of poolEntries(p)) {
      if (after.get(p.metadata.name)?.spec.allocations[key]?.id !== entry.id) throw new UsageError(`after the migration, ${ip} of ${p.metadata.name} is not ${entry.id}'s in ${dst.location}`);
    }
  }
  return (
    `migrated ${pools.length} pool(s) from ${src.location} to ${dst.location}: ${added} allocation(s) added, ${kept} already there, ` +
    `${reservations.length} reservation(s)\n${src.location} is left as it was: switch the NADs' datastore, then remove it\n`
  );
}

/** Whether a pod exists: 'gone' only on a 404, 'unknown' when the API did not say. */
export type PodLookup = (podRef: string) => Promise<'exists' | 'gone' | 'unknown'>;

async function podLookup(kubeconfig: string): Promise<PodLookup> {
  const [{ KubeClient }, { loadClientConfig }] = await Promise.all([import('../delegate/k8s/client.js'), import('../delegate/k8s/kubeconfig.js')]);
  const client = new KubeClient(loadClientConfig(kubeconfig));
  return async (podRef) => {
    const [ns, name] = podRef.split('/');
    if (!ns || !name) return 'unknown';
    try {
      const res = await client.request('GET', `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`);
      return res.status === 404 ? 'gone' : res.status === 200 ? 'exists' : 'unknown';
    } catch {
      return 'unknown';
    }
  };
}

/**
 * Releases allocations and reservations whose pod is gone, without whereabouts' races: a
 * candidate found in a first scan is released only inside a store transaction that reads the
 * pool again, finds the same entry (same container, pod and ifname: a pod re-created under the
 * same name and ADDed again has another container ID, whereabouts #176), and asks the API
 * about the pod again right then (a pod created during the scan exists by now, #207). A
 * conflicting write (an ADD meanwhile) runs the check again on fresh reads. Only a 404 frees.
 */
export async function collectOrphans(store: IpamStore, podState: PodLookup, opts: { dryRun?: boolean } = {}): Promise<string[]> {
  const pools = await store.listPools();
  const reservations = await store.listReservations();
  const state = new Map<string, Promise<string>>();
  const first = (podRef: string) => {
    let s = state.get(podRef);
    if (!s) state.set(podRef, (s = podState(podRef)));
    return s;
  };
  const candidates: Array<{ pool: string; key: string; ip: string; entry: IPAllocation }> = [];
  for (const p of pools) for (const e of poolEntries(p)) if (e.entry.podref && (await first(e.entry.podref)) === 'gone') candidates.push({ pool: p.metadata.name, ...e });
  const stray: OverlappingRangeIPReservation[] = [];
  for (const r of reservations) if (r.spec.podref && (await first(r.spec.podref)) === 'gone') stray.push(r);
  if (opts.dryRun) {
    return [
      ...candidates.map((c) => `would release ${c.pool} ${c.ip} (${c.entry.podref}, ${c.entry.id})`),
      ...stray.map((r) => `would delete reservation ${r.metadata.name} (${r.spec.podref})`),
    ];
  }
  return store.transaction(async (tx) => {
    const lines: string[] = [];
    const touched = new Map<string, IPPool>();
    for (const c of candidates) {
      const pool = touched.get(c.pool) ?? (await tx.getPool(c.pool));
      if (!pool) continue;
      const cur = pool.spec.allocations[c.key];
      if (!cur || cur.id !== c.entry.id || cur.podref !== c.entry.podref || (cur.ifname ?? '') !== (c.entry.ifname ?? '')) continue;
      if ((await podState(c.entry.podref)) !== 'gone') continue;
      delete pool.spec.allocations[c.key];
      touched.set(c.pool, pool);
      lines.push(`released ${c.pool} ${c.ip} (${c.entry.podref}, ${c.entry.id})`);
    }
    for (const p of touched.values()) tx.putPool(p);
    for (const r of stray) {
      const cur = await tx.getReservation(r.metadata.name);
      if (!cur || cur.spec.podref !== r.spec.podref || cur.spec.containerid !== r.spec.containerid) continue;
      if ((await podState(r.spec.podref)) !== 'gone') continue;
      tx.deleteReservation(r.metadata.name);
      lines.push(`deleted reservation ${r.metadata.name} (${r.spec.podref})`);
    }
    return lines;
  });
}

async function run(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    const msg = err instanceof UsageError ? err.message : asCniError(err).message;
    process.stderr.write(`multinic pool: ${msg}\n`);
    process.exitCode = 1;
  }
}

/** The store the options name, as the IPAM config's keys would (datastore given or overridden). */
export function storeConfigOf(argv: PoolArgs, datastore = argv.datastore): StoreConfig {
  const ipam: Record<string, unknown> = { datastore };
  if (argv.kubeconfig) ipam.kubernetes = { kubeconfig: argv.kubeconfig };
  for (const k of ['etcd-host', 'etcd-username', 'etcd-password', 'etcd-ca-cert-file', 'etcd-cert-file', 'etcd-key-file', 'etcd-prefix'] as const) {
    if (argv[k]) ipam[k.replaceAll('-', '_')] = argv[k];
  }
  if (argv['timeout-ms'] !== undefined) ipam.datastore_timeout_ms = argv['timeout-ms'];
  return readStoreConfig(ipam, argv['data-dir']);
}

async function withStore<T>(argv: PoolArgs, fn: (store: OpenStore) => Promise<T>, datastore?: string): Promise<T> {
  const store = await openStore(storeConfigOf(argv, datastore));
  try {
    return await fn(store);
  } finally {
    store.close?.();
  }
}

export const poolCommand: CommandModule<object, PoolArgs> = {
  command: 'pool <command>',
  describe: 'list, show, release, export and import the whereabouts-compatible IP pools of this node',
  builder: (y: Argv) =>
    y
      .option('datastore', { type: 'string', default: 'file', choices: ['file', 'etcd', 'kubernetes'], describe: 'where the pools are' })
      .option('data-dir', { type: 'string', default: DEFAULT_DATA_DIR, describe: 'the IPAM data_dir (file)' })
      .option('kubeconfig', { type: 'string', describe: 'kubeconfig (kubernetes store; pods for gc)' })
      .option('etcd-host', { type: 'string', describe: 'etcd endpoints: URL or host:port, comma-separated' })
      .option('etcd-username', { type: 'string' })
      .option('etcd-password', { type: 'string' })
      .option('etcd-ca-cert-file', { type: 'string' })
      .option('etcd-cert-file', { type: 'string' })
      .option('etcd-key-file', { type: 'string' })
      .option('etcd-prefix', { type: 'string', describe: 'key prefix (default /whereabouts.cni.cncf.io)' })
      .option('timeout-ms', { type: 'number', describe: 'budget of one store transaction (cluster stores)' })
      .command('list', 'every pool: name, range, allocated addresses', {}, (argv) =>
        run(async () => out(await withStore(argv as unknown as PoolArgs, listPools))),
      )
      .command(
        'show <pool>',
        'the allocations of one pool: IP, pod, container, ifname',
        (b) => b.positional('pool', { type: 'string', demandOption: true }),
        (argv) => run(async () => out(await withStore(argv as unknown as PoolArgs, (st) => showPool(st, argv.pool as string)))),
      )
      .command(
        'release [ip]',
        'free an address, or every address of a pod (--pod ns/name)',
        (b) =>
          b
            .positional('ip', { type: 'string', describe: 'the address to free' })
            .option('pod', { type: 'string', describe: 'free every address of this pod (namespace/name)' })
            .option('pool', { type: 'string', describe: 'only in this pool' }),
        (argv) =>
          run(async () => {
            const req: ReleaseRequest = {};
            if (argv.ip) req.ip = argv.ip as string;
            if (argv.pod) req.pod = argv.pod as string;
            if (argv.pool) req.pool = argv.pool as string;
            const freed = await withStore(argv as unknown as PoolArgs, (st) => releaseFromPools(st, req));
            out(freed.length ? freed.map((f) => `released ${f}`).join('\n') : 'nothing to release');
          }),
      )
      .command(
        'export',
        'print the pools and reservations as kubectl-applyable YAML',
        (b) => b.option('namespace', { alias: 'n', type: 'string', describe: 'metadata.namespace to set (whereabouts\' namespace)' }),
        (argv) => run(async () => out(await withStore(argv as unknown as PoolArgs, (st) => exportPools(st, argv.namespace as string | undefined)))),
      )
      .command(
        'import [file]',
        'write pools and reservations from YAML or JSON (a file, or - for stdin), replacing those of the same names',
        (b) => b.positional('file', { type: 'string', default: '-' }),
        (argv) =>
          run(async () => {
            const file = argv.file as string;
            const text = readFileSync(file === '-' ? 0 : file, 'utf8');
            out(await withStore(argv as unknown as PoolArgs, (st) => importPools(st, text)));
          }),
      )
      .command(
        'migrate',
        'copy pools and reservations from one store into another, merged with what it holds',
        (b) =>
          b
            .option('from', { type: 'string', default: 'file', choices: ['file', 'etcd', 'kubernetes'] })
            .option('to', { type: 'string', demandOption: true, choices: ['file', 'etcd', 'kubernetes'] }),
        (argv) =>
          run(async () => {
            const a = argv as unknown as PoolArgs & { from: string; to: string };
            if (a.from === a.to) throw new UsageError('--from and --to name the same store');
            out(await withStore(a, (src) => withStore(a, (dst) => migratePools(src, dst), a.to), a.from));
          }),
      )
      .command(
        'gc',
        'release allocations (and reservations) whose pods no longer exist; each is checked again right before it is released',
        (b) => b.option('dry-run', { type: 'boolean', default: false, describe: 'only list what would be released' }),
        (argv) =>
          run(async () => {
            const a = argv as unknown as PoolArgs & { 'dry-run': boolean };
            if (!a.kubeconfig) throw new UsageError('gc needs --kubeconfig to look pods up');
            const pods = await podLookup(a.kubeconfig);
            const lines = await withStore(a, (st) => collectOrphans(st, pods, { dryRun: a['dry-run'] }));
            out(lines.length ? lines.join('\n') : 'nothing to release');
          }),
      )
      .demandCommand(1, 'name a pool command: list, show, release, export, import, migrate, gc'),
  handler: () => {},
};
