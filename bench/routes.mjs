#!/usr/bin/env node
/**
 * Route-scale benchmark (issue 5): ADD and DEL latency of one attachment, macvlan + static IPAM
 * with N static routes + sbr, for N = 1, 10, 100, 1,000; multinic's built-in chain against
 * Debian's reference plugins (/usr/lib/cni), side by side in the same run, both through the
 * libcni driver (build/cnitool) as a runtime would call them, each run under `env -i`.
 *
 * Prints one JSON document on stdout: per implementation and route count the ADD and DEL
 * latencies (median, min, max, samples in ms), what each DEL left behind (routes outside main
 * and local, source rules: must be 0), and the route-scale ratio: how much more the reference
 * pays for 1,000 routes over one than we do (target: >= 10).
 *
 *   sudo node bench/routes.mjs [--runs 7] [--counts 1,10,100,1000]
 *   MULTINIC_BIN=/path/to/multinic  (default dist/multinic)   CNITOOL=... (default build/cnitool)
 *
 * Needs root (network namespaces). Everything it creates is named mnbench-<pid>-* and removed
 * at the end, also on failure.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REFERENCE_DIR = '/usr/lib/cni';
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

const RUNS = Number(arg('runs', '7'));
const COUNTS = arg('counts', '1,10,100,1000').split(',').map(Number);
const BIN = resolve(ROOT, process.env.MULTINIC_BIN ?? 'dist/multinic');
const CNITOOL = resolve(ROOT, process.env.CNITOOL ?? 'build/cnitool');
const PREFIX = `mnbench-${process.pid}`;

if (process.getuid?.() !== 0) fail('run as root: the benchmark creates network namespaces');
if (!existsSync(BIN)) fail(`multinic binary not found at ${BIN}: run \`make binary\` or set MULTINIC_BIN`);
if (!existsSync(CNITOOL)) fail(`${CNITOOL} missing: run \`make test-deps\``);
for (const p of ['macvlan', 'static', 'sbr']) {
  if (!existsSync(join(REFERENCE_DIR, p))) fail(`reference plugin ${join(REFERENCE_DIR, p)} missing (apt install containernetworking-plugins)`);
}

function fail(msg) {
  process.stderr.write(`bench/routes: ${msg}\n`);
  process.exit(2);
}

function ip(...args) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function ipJson(ns, ...args) {
  const out = execFileSync('ip', ['-n', ns, '-j', ...args], { encoding: 'utf8' });
  return out.trim() ? JSON.parse(out) : [];
}

const made = [];
const work = mkdtempSync(join(tmpdir(), `${PREFIX}-`));
function cleanup() {
  for (const ns of made.reverse()) spawnSync('ip', ['netns', 'del', ns]);
  made.length = 0;
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

function netns(role) {
  const name = `${PREFIX}-${role}`;
  ip('netns', 'add', name);
  made.push(name);
  return name;
}

// The node: eth1 is a veth whose peer sits in a switch netns (this kernel has no dummy links).
const sw = netns('sw');
const node = netns('node');
ip('-n', node, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'sw-eth1', 'netns', sw);
ip('-n', sw, 'addr', 'add', '192.0.2.1/24', 'dev', 'sw-eth1');
ip('-n', sw, 'link', 'set', 'sw-eth1', 'up');
ip('-n', node, 'link', 'set', 'lo', 'up');
ip('-n', node, 'link', 'set', 'eth1', 'up');

// Our plugins: the binary under the names libcni execs.
const ours = join(work, 'multinic-plugins');
mkdirSync(ours);
for (const name of ['macvlan', 'static', 'sbr']) symlinkSync(BIN, join(ours, name));
const IMPLS = { multinic: `${ours}:${REFERENCE_DIR}`, reference: REFERENCE_DIR };

function routes(n) {
  return Array.from({ length: n }, (_, i) => ({ dst: `10.${(i >> 8) & 255}.${i & 255}.0/24` }));
}

function confDir(n) {
  const dir = join(work, `conf-${n}`);
  mkdirSync(dir, { recursive: true });
  const conflist = {
    cniVersion: '1.0.0',
    name: 'bench',
    plugins: [
      {
        type: 'macvlan',
        master: 'eth1',
        mode: 'bridge',
        ipam: { type: 'static', addresses: [{ address: '192.0.2.50/24', gateway: '192.0.2.1' }], routes: routes(n) },
      },
      { type: 'sbr' },
    ],
  };
  writeFileSync(join(dir, '10-bench.conflist'), JSON.stringify(conflist));
  return dir;
}

/** One cnitool run under `env -i`; returns wall-clock ms. */
function cnitool(command, impl, conf, pod) {
  const env = [
    `PATH=${PATH}`,
    `NETCONFPATH=${conf}`,
    `CNI_PATH=${IMPLS[impl]}`,
    'CNI_IFNAME=net1',
    `CNI_CACHE_DIR=${join(work, 'cache')}`,
  ];
  const argv = ['-i', ...env, 'ip', 'netns', 'exec', node, CNITOOL, command, 'bench', `/run/netns/${pod}`];
  const t0 = process.hrtime.bigint();
  const r = spawnSync('env', argv, { encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${impl} ${command} failed (exit ${r.status}): ${r.stderr}${r.stdout}`);
  return ms;
}

/** What DEL must not leave: routes in tables other than main and local, and source rules. */
function leftovers(pod) {
  const rs = [...ipJson(pod, '-4', 'route', 'show', 'table', 'all'), ...ipJson(pod, '-6', 'route', 'show', 'table', 'all')];
  const tables = rs.filter((r) => r.table !== undefined && r.table !== 'local' && r.table !== 'main').length;
  const ruleList = [...ipJson(pod, '-4', 'rule', 'show'), ...ipJson(pod, '-6', 'rule', 'show')];
  const rules = ruleList.filter((r) => r.src !== undefined && r.src !== 'all').length;
  return { tableRoutes: tables, rules };
}

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const round = (x) => Math.round(x * 10) / 10;
  return { median: round(s[Math.floor(s.length / 2)]), min: round(s[0]), max: round(s[s.length - 1]), samples: samples.map(round) };
}

const results = [];
let pods = 0;
for (const n of COUNTS) {
  const conf = confDir(n);
  const samples = { multinic: { add: [], del: [] }, reference: { add: [], del: [] } };
  const left = { multinic: { tableRoutes: 0, rules: 0 }, reference: { tableRoutes: 0, rules: 0 } };
  // One warm-up round each (page cache, first extraction of our native addons), then
  // the two implementations alternate so drift hits both alike.
  for (let run = -1; run < RUNS; run++) {
    for (const impl of run % 2 === 0 ? ['multinic', 'reference'] : ['reference', 'multinic']) {
      const pod = netns(`pod${pods++}`);
      const add = cnitool('add', impl, conf, pod);
      const del = cnitool('del', impl, conf, pod);
      const l = leftovers(pod);
      spawnSync('ip', ['netns', 'del', pod]);
      made.splice(made.indexOf(pod), 1);
      if (run < 0) continue;
      samples[impl].add.push(add);
      samples[impl].del.push(del);
      left[impl].tableRoutes += l.tableRoutes;
      left[impl].rules += l.rules;
    }
  }
  for (const impl of ['multinic', 'reference']) {
    results.push({ impl, routes: n, add: stats(samples[impl].add), del: stats(samples[impl].del), leftAfterDel: left[impl] });
  }
}

function median(impl, n, what) {
  return results.find((r) => r.impl === impl && r.routes === n)?.[what].median;
}

const lo = Math.min(...COUNTS);
const hi = Math.max(...COUNTS);
const scale = {};
for (const what of ['add', 'del']) {
  const oursDelta = median('multinic', hi, what) - median('multinic', lo, what);
  const refDelta = median('reference', hi, what) - median('reference', lo, what);
  scale[what] = {
    routes: [lo, hi],
    multinicExtraMs: Math.round(oursDelta * 10) / 10,
    referenceExtraMs: Math.round(refDelta * 10) / 10,
    // How many times more the reference pays for the extra routes; target >= 10 for ADD.
    ratio: oursDelta > 0 ? Math.round((refDelta / oursDelta) * 10) / 10 : null,
  };
}

process.stdout.write(
  `${JSON.stringify(
    {
      bench: 'routes',
      description: 'one attachment: macvlan + static (N routes) + sbr, ADD and DEL through libcni (build/cnitool), env -i',
      runs: RUNS,
      binary: BIN,
      results,
      routeScale: scale,
      target: 'routeScale.add.ratio >= 10 and every leftAfterDel 0',
      ok: (scale.add.ratio === null || scale.add.ratio >= 10) && results.every((r) => r.leftAfterDel.tableRoutes === 0 && r.leftAfterDel.rules === 0),
    },
    null,
    2,
  )}\n`,
);
