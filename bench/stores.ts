/**
 * IPAM stores side by side (issue 9): the whereabouts IPAM through the built binary against
 * each `datastore` — file, etcd (a real one: Debian's etcd-server, test/helpers/etcd-server.ts)
 * and kubernetes (the local API server stand-in, test/helpers/fake-apiserver.ts: whereabouts'
 * IPPool resources, resourceVersion and 409 semantics) — all on 127.0.0.1, nothing else.
 * Every run is an IPAM-only invocation (the binary under the name `whereabouts`) with exactly
 * the CNI variables and PATH, as `env -i` would give it. Prints one JSON object:
 *
 *   sequential   per-ADD and per-DEL latency (process start to exit), ≥ 30 ADD+DEL pairs per
 *                store, the stores alternating run by run so load drift hits all alike
 *   deltas       etcd − file and kubernetes − file per ADD (difference of the medians, and the
 *                median of the per-round differences); target: etcd − file ≤ 5 ms
 *   concurrent   64 ADDs from 64 processes at once into one /24, then 64 DELs, per store: wall
 *                times, failures, duplicate addresses, allocations left in the pool afterwards
 *
 * Run: npx tsx bench/stores.ts [--bin dist/multinic] [--runs 30] [--concurrent 64]
 * (bench/bench.mjs runs it in `make bench`; `node bench/bench.mjs --only stores` alone.)
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { EtcdServer, ETCD_BIN } from '../test/helpers/etcd-server.js';
import { FakeApiServer } from '../test/helpers/fake-apiserver.js';

const { values: opts } = parseArgs({
  options: {
    bin: { type: 'string', default: process.env.MULTINIC_BIN ?? 'dist/multinic' },
    runs: { type: 'string', default: '30' },
    concurrent: { type: 'string', default: '64' },
  },
});
const RUNS = Math.max(30, Number(opts.runs));
const CONC = Number(opts.concurrent);
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NS = 'bench-system';
const STORES = ['file', 'etcd', 'kubernetes'] as const;
type Store = (typeof STORES)[number];

const r1 = (x: number) => Math.round(x * 10) / 10;
function stats(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
  return { n: s.length, median: r1(q(0.5)), p95: r1(q(0.95)), min: r1(s[0]!), max: r1(s[s.length - 1]!) };
}
const log = (msg: string) => process.stderr.write(`stores: ${msg}\n`);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** One IPAM-only run, asynchronous: the API server stand-in answers from this event loop. */
function run(plugin: string, command: 'ADD' | 'DEL', id: string, conf: object): Promise<Run> {
  const t = performance.now();
  return new Promise((done, reject) => {
    const child = spawn(plugin, [], {
      env: {
        PATH,
        CNI_COMMAND: command,
        CNI_CONTAINERID: id,
        CNI_NETNS: '/var/run/netns/bench-none',
        CNI_IFNAME: 'net1',
        CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-${id}`,
        CNI_PATH: '/opt/cni/bin',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => done({ code, stdout, stderr, ms: performance.now() - t }));
    child.stdin.end(JSON.stringify(conf));
  });
}

const work = mkdtempSync(join(tmpdir(), 'mnb-stores-'));
const etcd = new EtcdServer();
const api = new FakeApiServer();
let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  await Promise.allSettled([etcd.stop(), api.stop()]);
  rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void cleanup().finally(() => process.exit(130)));

try {
  // A private copy: a `make binary` elsewhere during the run must not change what is measured.
  const binDir = join(work, 'bin');
  mkdirSync(binDir);
  copyFileSync(resolve(opts.bin!), join(binDir, 'multinic'));
  chmodSync(join(binDir, 'multinic'), 0o755);
  const plugin = join(binDir, 'whereabouts');
  symlinkSync('multinic', plugin);

  log(`starting etcd (${ETCD_BIN}) and the API server stand-in on 127.0.0.1`);
  await Promise.all([etcd.start(), api.start()]);
  const kubeconfig = api.writeKubeconfig(join(work, 'kube'), { token: 'good-token', namespace: NS });

  /** The same IPAM config on each store, a pool of its own per `tag`. */
  function conf(store: Store, tag: string, range: string): object {
    const base = { type: 'whereabouts', range };
    const ipam =
      store === 'file' ? { ...base, data_dir: join(work, `file-${tag}`) }
      : store === 'etcd' ? { ...base, datastore: 'etcd', etcd_host: `127.0.0.1:${etcd.clientPort}`, etcd_prefix: `/bench/${tag}` }
      : { ...base, datastore: 'kubernetes', kubernetes: { kubeconfig }, network_name: tag };
    return { cniVersion: '1.0.0', name: 'stores', type: 'macvlan', ipam };
  }

  /** Allocations left in the pool of `tag` (after every DEL: 0). */
  async function left(store: Store, tag: string): Promise<number> {
    const count = (doc: { spec?: { allocations?: object } } | undefined) => Object.keys(doc?.spec?.allocations ?? {}).length;
    if (store === 'file') {
      const dir = join(work, `file-${tag}`, 'ippools');
      return readdirSync(dir).filter((f) => f.endsWith('.json')).reduce((n, f) => n + count(JSON.parse(readFileSync(join(dir, f), 'utf8'))), 0);
    }
    if (store === 'etcd') {
      const prefix = `/bench/${tag}/ippools/`;
      const b64 = (s: string) => Buffer.from(s).toString('base64');
      const res = await fetch(`${etcd.endpoint}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: b64(prefix), range_end: b64(prefix.slice(0, -1) + '0') }) });
      const body = (await res.json()) as { kvs?: Array<{ value: string }> };
      return (body.kvs ?? []).reduce((n, kv) => n + count(JSON.parse(Buffer.from(kv.value, 'base64').toString())), 0);
    }
    return api.listWhereabouts('ippools', NS).filter((p) => p.metadata.name.startsWith(`${tag}-`)).reduce((n, p) => n + count(p), 0);
  }

  // ---------------------------------------------------------------- sequential
  log(`sequential: ${RUNS} ADD+DEL per store (+1 warm-up round), stores alternating`);
  const seq = Object.fromEntries(STORES.map((s) => [s, { add: [] as number[], del: [] as number[], conf: conf(s, 'seq', '10.210.0.0/24') }])) as Record<Store, { add: number[]; del: number[]; conf: object }>;
  for (let i = -1; i < RUNS; i++) {
    for (const store of i % 2 === 0 ? STORES : [...STORES].reverse()) {
      const s = seq[store];
      const id = `seq-${store}-${i + 1}`;
      const add = await run(plugin, 'ADD', id, s.conf);
      if (add.code !== 0) throw new Error(`${store} ADD failed (${add.code}): ${add.stdout}${add.stderr}`);
      const del = await run(plugin, 'DEL', id, s.conf);
      if (del.code !== 0) throw new Error(`${store} DEL failed (${del.code}): ${del.stdout}${del.stderr}`);
      if (i >= 0) {
        s.add.push(add.ms);
        s.del.push(del.ms);
      }
    }
  }
  const sequential: Record<string, unknown> = {};
  for (const s of STORES) sequential[s] = { add: stats(seq[s].add), del: stats(seq[s].del), leftAfterDel: await left(s, 'seq') };

  const TARGET_MS = 5;
  const delta = (store: Store) => {
    const paired = seq[store].add.map((x, k) => x - seq.file.add[k]!);
    return {
      addMedianMs: r1(stats(seq[store].add).median - stats(seq.file.add).median),
      addPairedMedianMs: stats(paired).median,
      delMedianMs: r1(stats(seq[store].del).median - stats(seq.file.del).median),
    };
  };
  const deltas = {
    targetMs: TARGET_MS,
    etcdMinusFile: delta('etcd'),
    kubernetesMinusFile: delta('kubernetes'),
    met: false,
  };
  deltas.met = deltas.etcdMinusFile.addMedianMs <= TARGET_MS;

  // ---------------------------------------------------------------- concurrent
  const concurrent: Record<string, unknown> = {};
  const conflictsBefore = api.conflicts;
  for (const store of STORES) {
    log(`concurrent: ${CONC} ADDs at once, then ${CONC} DELs, ${store}`);
    const c = conf(store, 'conc', '10.211.0.0/24');
    let t = performance.now();
    const adds = await Promise.all(Array.from({ length: CONC }, (_, i) => run(plugin, 'ADD', `conc-${store}-${i}`, c)));
    const addWallMs = performance.now() - t;
    const ok = adds.filter((r) => r.code === 0);
    const addrs = ok.map((r) => (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips[0]!.address);
    const livePeak = await left(store, 'conc');
    t = performance.now();
    const dels = await Promise.all(Array.from({ length: CONC }, (_, i) => run(plugin, 'DEL', `conc-${store}-${i}`, c)));
    const delWallMs = performance.now() - t;
    const failed = [...adds, ...dels].filter((r) => r.code !== 0).map((r) => (r.stdout || r.stderr).trim().split('\n').pop());
    concurrent[store] = {
      processes: CONC,
      addWallMs: r1(addWallMs),
      delWallMs: r1(delWallMs),
      addFailures: CONC - ok.length,
      delFailures: dels.filter((r) => r.code !== 0).length,
      duplicates: addrs.length - new Set(addrs).size,
      allocatedAfterAdd: livePeak,
      leftAfterDel: await left(store, 'conc'),
      slowestAddMs: r1(Math.max(...adds.map((r) => r.ms))),
      ...(failed.length ? { failureSample: [...new Set(failed)].slice(0, 3) } : {}),
    };
  }

  const out = {
    bench: 'whereabouts IPAM per datastore (bench/stores.ts)',
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    loadavg: loadavg().map(r1),
    etcd: ETCD_BIN,
    runs: RUNS,
    sequential,
    deltas,
    concurrent,
    kubernetesConflicts409: api.conflicts - conflictsBefore,
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
} finally {
  await cleanup();
}
