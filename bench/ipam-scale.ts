/**
 * IPAM scale benchmark (issue 4). Prints one JSON object:
 *
 *   allocator    the pure allocator's cost of choosing one address (index build excluded and
 *                included) with 0, 1k, 10k and 50k live allocations in one /16
 *   store        one ADD+DEL through the file store in this process (lock, read, parse,
 *                allocate, serialise, atomic write), same pool sizes
 *   process      one ADD through the binary (process start included), same pool sizes
 *   concurrent   64 ADDs from 64 separate processes at once, then 64 DELs: wall time and
 *                duplicates
 *
 * Run: npx tsx bench/ipam-scale.ts [--bin dist/multinic] [--sizes 0,1000,10000,50000] [--skip-process]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { AllocationIndex, lowestFree } from '../src/ipam/allocator.js';
import type { Allocations } from '../src/ipam/documents.js';
import { FileStore } from '../src/ipam/file-store.js';
import { allocateAddresses, releaseAddresses } from '../src/ipam/ipam.js';
import { parseRange } from '../src/ipam/range.js';

const { values: opts } = parseArgs({
  options: {
    bin: { type: 'string', default: process.env.MULTINIC_BIN ?? 'dist/multinic' },
    sizes: { type: 'string', default: '0,1000,10000,50000' },
    'skip-process': { type: 'boolean', default: false },
  },
});
const BIN = resolve(opts.bin!);
const SIZES = opts.sizes!.split(',').map(Number);
const RANGE = '10.200.0.0/16';
const POOL_NAME = '10.200.0.0-16';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round = (x: number) => Math.round(x * 1000) / 1000;

/** Live allocations spread over the pool: the lowest `n` addresses minus every 7th, so gaps exist. */
function allocationsOf(n: number): Allocations {
  const a: Allocations = {};
  let off = 1;
  for (let i = 0; i < n; i++, off++) {
    if (off % 7 === 0 && i < n / 2) off++;
    a[String(off)] = { id: `ctr${i}`.padEnd(64, '0'), podref: `default/pod-${i}`, ifname: 'net1' };
  }
  return a;
}

function writePool(dir: string, allocations: Allocations): void {
  mkdirSync(join(dir, 'ippools'), { recursive: true, mode: 0o700 });
  const doc = { apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind: 'IPPool', metadata: { name: POOL_NAME }, spec: { range: RANGE, allocations } };
  writeFileSync(join(dir, 'ippools', `${POOL_NAME}.json`), JSON.stringify(doc), { mode: 0o600 });
}

function benchAllocator(n: number) {
  const range = parseRange({ range: RANGE });
  // Keys as JSON.parse gives them: fresh objects each round, so index building is measured too.
  const text = JSON.stringify(allocationsOf(n));
  const rounds = 50;
  const pick: number[] = [];
  const build: number[] = [];
  const parse: number[] = [];
  for (let i = 0; i < rounds; i++) {
    let t = performance.now();
    const allocs = JSON.parse(text) as Allocations;
    parse.push(performance.now() - t);
    t = performance.now();
    const index = AllocationIndex.of(allocs);
    build.push(performance.now() - t);
    t = performance.now();
    for (let k = 0; k < 100; k++) lowestFree(index, range, range.first + BigInt(k));
    pick.push((performance.now() - t) / 100);
  }
  return { live: n, pickUs: round(median(pick) * 1000), indexBuildMs: round(median(build)), jsonParseMs: round(median(parse)) };
}

async function benchStore(n: number) {
  const dir = mkdtempSync(join(tmpdir(), 'ipam-bench-'));
  try {
    writePool(dir, allocationsOf(n));
    const store = new FileStore(dir);
    const req = { networkName: '', ranges: [parseRange({ range: RANGE })], overlapping: true };
    const add: number[] = [];
    const del: number[] = [];
    for (let i = 0; i < 15; i++) {
      const owner = { containerId: `bench${i}`, podRef: `default/bench${i}`, ifName: 'net1' };
      let t = performance.now();
      await allocateAddresses(store, req, owner);
      add.push(performance.now() - t);
      t = performance.now();
      await releaseAddresses(store, req, owner.containerId, owner.ifName);
      del.push(performance.now() - t);
    }
    return { live: n, addMs: round(median(add)), delMs: round(median(del)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Run {
  code: number | null;
  stdout: string;
  ms: number;
}

function runPlugin(pluginPath: string, command: string, id: string, conf: object): Promise<Run> {
  const t = performance.now();
  return new Promise((resolveRun, reject) => {
    const child = spawn(pluginPath, [], {
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: command,
        CNI_CONTAINERID: id,
        CNI_NETNS: '/var/run/netns/bench',
        CNI_IFNAME: 'net1',
        CNI_ARGS: `K8S_POD_NAMESPACE=bench;K8S_POD_NAME=${id}`,
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.on('error', reject);
    child.on('close', (code) => resolveRun({ code, stdout, ms: performance.now() - t }));
    child.stdin.end(JSON.stringify(conf));
  });
}

function conf(dataDir: string, range = RANGE) {
  return { cniVersion: '1.0.0', name: 'bench', type: 'macvlan', ipam: { type: 'whereabouts', range, data_dir: dataDir } };
}

async function benchProcess(pluginPath: string, n: number) {
  const dir = mkdtempSync(join(tmpdir(), 'ipam-bench-'));
  try {
    writePool(dir, allocationsOf(n));
    const add: number[] = [];
    for (let i = 0; i < 9; i++) {
      const r = await runPlugin(pluginPath, 'ADD', `p${i}`, conf(dir));
      if (r.code !== 0) throw new Error(`ADD failed: ${r.stdout}`);
      add.push(r.ms);
      await runPlugin(pluginPath, 'DEL', `p${i}`, conf(dir));
    }
    return { live: n, addMs: round(median(add)) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchConcurrent(pluginPath: string, count: number) {
  const dir = mkdtempSync(join(tmpdir(), 'ipam-bench-'));
  try {
    const c = conf(dir, '10.201.0.0/24');
    let t = performance.now();
    const adds = await Promise.all(Array.from({ length: count }, (_, i) => runPlugin(pluginPath, 'ADD', `c${i}`, c)));
    const addWallMs = performance.now() - t;
    const ok = adds.filter((r) => r.code === 0);
    const addrs = ok.map((r) => (JSON.parse(r.stdout) as { ips: Array<{ address: string }> }).ips[0]!.address);
    t = performance.now();
    const dels = await Promise.all(Array.from({ length: count }, (_, i) => runPlugin(pluginPath, 'DEL', `c${i}`, c)));
    const delWallMs = performance.now() - t;
    return {
      processes: count,
      addWallMs: round(addWallMs),
      delWallMs: round(delWallMs),
      addFailures: count - ok.length,
      delFailures: dels.filter((r) => r.code !== 0).length,
      duplicates: addrs.length - new Set(addrs).size,
      slowestAddMs: round(Math.max(...adds.map((r) => r.ms))),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const out: Record<string, unknown> = { node: process.version, cpus: (await import('node:os')).cpus().length, range: RANGE };
out.allocator = SIZES.map(benchAllocator);
out.store = [];
for (const n of SIZES) (out.store as unknown[]).push(await benchStore(n));
if (!opts['skip-process']) {
  const binDir = mkdtempSync(join(tmpdir(), 'ipam-bench-bin-'));
  const pluginPath = join(binDir, 'whereabouts');
  symlinkSync(BIN, pluginPath);
  try {
    out.process = [];
    for (const n of SIZES) (out.process as unknown[]).push(await benchProcess(pluginPath, n));
    out.concurrent = await benchConcurrent(pluginPath, 64);
  } finally {
    rmSync(binDir, { recursive: true, force: true });
  }
}
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
