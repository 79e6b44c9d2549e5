#!/usr/bin/env node
/**
 * `make bench`: multinic side by side with the reference chain (Debian's /usr/lib/cni plugins,
 * what Multus would run), in one run, both sides measured in it, alternating so load drift
 * hits both alike. Every plugin run gets an explicit, minimal environment (as `env -i`), the
 * timed work runs inside a fake node netns (secondary NICs eth1..eth3: veths, this kernel has
 * no dummy), each pod in a fresh netns.
 *
 *   1  one attachment: macvlan on eth1 + IPAM + sbr + 2 static routes; ADD, CHECK, DEL through
 *      the libcni driver (build/cnitool). multinic as the same conflist (our plugins under the
 *      reference names) and as the meta-plugin (one exec); reference: macvlan + host-local +
 *      sbr. Also with static IPAM on both sides.
 *   2  a pod with three attachments (eth1..eth3): multinic's meta-plugin, one cnitool run,
 *      against three cnitool runs of the reference conflist, one per attachment.
 *   3  bare start: CNI_COMMAND=VERSION, multinic against a Go plugin (macvlan).
 *   4  route scale (bench/routes.mjs), pool scale (bench/ipam-scale.ts for the in-process
 *      parts; here whereabouts against host-local with 0/1k/10k/50k live allocations, and 64
 *      concurrent ADDs), 32 and 64 pods added at once then deleted.
 *   5  peak RSS of one ADD (/usr/bin/time), and where multinic's ADD time goes
 *      (MULTINIC_TRACE=1, src/delegate/entry.ts).
 *   6  IPAM stores (bench/stores.ts): whereabouts on the file, etcd and kubernetes stores, per-ADD
 *      latency and 64 concurrent ADDs, a real etcd and the API server stand-in on 127.0.0.1.
 *
 * Prints the table of ratios (multinic / reference), writes bench/results/bench-<time>.json
 * and docs/benchmarks.md.
 *
 *   sudo node bench/bench.mjs [--runs 30] [--bin dist/multinic] [--cnitool build/cnitool]
 *                             [--skip-scale] [--skip-stores] [--no-write]
 *   sudo node bench/bench.mjs --only stores   (part 6 alone: prints its table, writes nothing)
 *   node bench/bench.mjs --report bench/results/bench-<time>.json   (table and doc again, no runs)
 *
 * Needs root. Everything it makes is named mnb-<pid>-* and removed at the end, also on failure.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const REF = '/usr/lib/cni';
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const TIME = '/usr/bin/time';

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '30' },
    bin: { type: 'string', default: 'dist/multinic' },
    cnitool: { type: 'string', default: 'build/cnitool' },
    'skip-scale': { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    'skip-stores': { type: 'boolean', default: false },
    only: { type: 'string' },
    inner: { type: 'string' },
    report: { type: 'string' },
  },
});
const RUNS = Number(opts.runs);
if (opts.only !== undefined && opts.only !== 'stores') fail(`--only: only "stores" is known, not ${opts.only}`);

function fail(msg) {
  process.stderr.write(`bench: ${msg}\n`);
  process.exit(2);
}

const sh = (argv, o = {}) => execFileSync(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...o });
const ip = (...args) => sh(['ip', ...args]);

// ---------------------------------------------------------------- statistics

const sorted = (xs) => [...xs].sort((a, b) => a - b);
const r1 = (x) => (x === null || x === undefined || Number.isNaN(x) ? null : Math.round(x * 10) / 10);
function stats(samples) {
  const s = sorted(samples);
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  return { n: s.length, median: r1(q(0.5)), p95: r1(q(0.95)), min: r1(s[0]), max: r1(s[s.length - 1]) };
}
const log = (msg) => process.stderr.write(`bench: ${msg}\n`);

// ---------------------------------------------------------------- outer: namespaces, re-exec

if (opts.inner === undefined && opts.report === undefined) {
  if (process.getuid?.() !== 0) fail('run as root: the benchmark creates network namespaces');
  const bin = resolve(ROOT, opts.bin);
  const cnitool = resolve(ROOT, opts.cnitool);
  if (!existsSync(bin)) fail(`${bin} missing: run \`make binary\``);
  if (!existsSync(cnitool)) fail(`${cnitool} missing: run \`make test-deps\``);
  if (!existsSync(TIME)) fail(`${TIME} missing: apt-get install time (scripts/install-deps.sh)`);
  for (const p of ['macvlan', 'host-local', 'static', 'sbr']) if (!existsSync(join(REF, p))) fail(`${REF}/${p} missing (containernetworking-plugins)`);

  const prefix = `mnb-${process.pid}`;
  const work = mkdtempSync(join(tmpdir(), `${prefix}-`));
  const made = [];
  const cleanup = () => {
    for (const out of (spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout ?? '').split('\n')) {
      const name = out.split(' ')[0];
      if (name.startsWith(`${prefix}-`) && !made.includes(name)) made.push(name);
    }
    for (const ns of made.reverse()) spawnSync('ip', ['netns', 'del', ns]);
    rmSync(work, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

  // A private copy: a `make binary` elsewhere during the run must not change what is measured.
  const plugins = join(work, 'multinic-plugins');
  mkdirSync(plugins);
  copyFileSync(bin, join(plugins, 'multinic'));
  execFileSync('chmod', ['755', join(plugins, 'multinic')]);
  for (const name of ['macvlan', 'static', 'whereabouts', 'sbr']) symlinkSync('multinic', join(plugins, name));

  const sw = `${prefix}-sw`;
  const node = `${prefix}-node`;
  for (const ns of [sw, node]) {
    ip('netns', 'add', ns);
    made.push(ns);
  }
  ip('-n', node, 'link', 'set', 'lo', 'up');
  for (const [i, subnet] of [[1, '192.0.2'], [2, '198.51.100'], [3, '203.0.113']]) {
    ip('-n', node, 'link', 'add', `eth${i}`, 'type', 'veth', 'peer', 'name', `sw-eth${i}`, 'netns', sw);
    ip('-n', sw, 'addr', 'add', `${subnet}.1/24`, 'dev', `sw-eth${i}`);
    ip('-n', sw, 'link', 'set', `sw-eth${i}`, 'up');
    ip('-n', node, 'link', 'set', `eth${i}`, 'up');
  }
  const state = { prefix, work, node, plugins, bin, cnitool, script: fileURLToPath(import.meta.url) };
  const r = spawnSync(
    'ip',
    ['netns', 'exec', node, 'env', '-i', `PATH=${PATH}`, process.execPath, state.script, '--inner', JSON.stringify(state), '--runs', String(RUNS),
      ...(opts['skip-scale'] ? ['--skip-scale'] : []), ...(opts['no-write'] ? ['--no-write'] : []),
      ...(opts['skip-stores'] ? ['--skip-stores'] : []), ...(opts.only ? ['--only', opts.only] : [])],
    { stdio: 'inherit' },
  );
  process.exit(r.status ?? 1);
}

// ---------------------------------------------------------------- inner: runs in the node netns

async function measure() {

  const S = JSON.parse(opts.inner);
  const OURS = `${S.plugins}:${REF}`;
  const MULTINIC = join(S.plugins, 'multinic');
  let podCount = 0;
  const now = () => Number(process.hrtime.bigint()) / 1e6;

  function newPod() {
    const name = `${S.prefix}-pod${podCount++}`;
    ip('netns', 'add', name);
    return name;
  }
  const delPod = (name) => spawnSync('ip', ['netns', 'del', name]);

  /** One process with exactly `env` (plus PATH): wall ms, exit status, output. */
  function timed(argv, env, stdin) {
    const t = now();
    const r = spawnSync(argv[0], argv.slice(1), { env: { PATH, ...env }, input: stdin, encoding: 'utf8', maxBuffer: 64 << 20 });
    return { ms: now() - t, status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  function timedAsync(argv, env) {
    const t = now();
    return new Promise((res) => {
      const c = spawn(argv[0], argv.slice(1), { env: { PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      c.stdout.on('data', (d) => (out += d));
      c.stderr.on('data', (d) => (out += d));
      c.on('close', (status) => res({ ms: now() - t, status, stdout: out }));
    });
  }

  /** A NETCONFPATH with the given confs (object with plugins → .conflist). */
  function confDir(label, confs) {
    const dir = join(S.work, `conf-${label}`);
    mkdirSync(dir, { recursive: true });
    confs.forEach((c, i) => writeFileSync(join(dir, `${10 + i}-${c.name}.${c.plugins ? 'conflist' : 'conf'}`), JSON.stringify(c)));
    return dir;
  }

  function cnitoolEnv(cniPath, conf, ifName, extra = {}) {
    return { NETCONFPATH: conf, CNI_PATH: cniPath, CNI_IFNAME: ifName, CNI_CACHE_DIR: join(S.work, 'libcni-cache'), ...extra };
  }

  function cnitool(command, net, pod, env, check = true) {
    const r = timed([S.cnitool, command, net, `/run/netns/${pod}`], env);
    if (check && r.status !== 0) throw new Error(`cnitool ${command} ${net} failed (${r.status}): ${r.stderr}${r.stdout}`);
    return r;
  }

  // ---------------------------------------------------------------- configurations

  const SUBNETS = ['192.0.2', '198.51.100', '203.0.113'];
  const routes2 = (i) => [
    { dst: `10.${10 + i}.1.0/24`, gw: `${SUBNETS[i]}.1` },
    { dst: `10.${10 + i}.2.0/24`, gw: `${SUBNETS[i]}.1` },
  ];
  function ipam(kind, i) {
    const s = SUBNETS[i];
    switch (kind) {
      case 'host-local':
        return { type: 'host-local', ranges: [[{ subnet: `${s}.0/24`, rangeStart: `${s}.100`, rangeEnd: `${s}.250`, gateway: `${s}.1` }]], routes: routes2(i), dataDir: join(S.work, 'host-local') };
      case 'whereabouts':
        return { type: 'whereabouts', range: `${s}.0/24`, range_start: `${s}.100`, range_end: `${s}.250`, gateway: `${s}.1`, routes: routes2(i), data_dir: join(S.work, 'whereabouts') };
      case 'static':
        return { type: 'static', addresses: [{ address: `${s}.50/24`, gateway: `${s}.1` }], routes: routes2(i) };
    }
    throw new Error(kind);
  }
  const attachment = (name, kind, i) => ({
    cniVersion: '1.0.0',
    name,
    plugins: [{ type: 'macvlan', master: `eth${i + 1}`, mode: 'bridge', ipam: ipam(kind, i) }, { type: 'sbr' }],
  });
  const meta = (name, delegates) => ({ cniVersion: '1.0.0', name, type: 'multinic', cniDir: join(S.work, 'multinic-cache'), delegates });

  // Each implementation: how a runtime would run it. `runs` returns [{net, ifName}] per pod.
  const IMPL1 = {
    'reference (host-local)': { cniPath: REF, conf: confDir('ref-hl', [attachment('one', 'host-local', 0)]) },
    'multinic conflist (whereabouts)': { cniPath: OURS, conf: confDir('mn-wa', [attachment('one', 'whereabouts', 0)]) },
    'multinic meta (whereabouts)': { cniPath: OURS, conf: confDir('mn-meta', [meta('one', [attachment('one', 'whereabouts', 0)])]) },
    'reference (static)': { cniPath: REF, conf: confDir('ref-st', [attachment('one', 'static', 0)]) },
    'multinic conflist (static)': { cniPath: OURS, conf: confDir('mn-st', [attachment('one', 'static', 0)]) },
  };

  /** A CHECK that fails is timed all the same, and counted with its message in the results. */
  const checkFailures = {};
  function checkFailure(impl, r) {
    const name = Object.keys(IMPL1).find((k) => IMPL1[k] === impl) ?? Object.keys(IMPL3).find((k) => IMPL3[k] === impl);
    const f = (checkFailures[name] ??= { count: 0, message: '' });
    f.count++;
    f.message = (r.stdout || r.stderr).trim().split('\n').pop();
  }

  /** Alternating rounds over implementations; fn(impl, pod) returns {add, check, del} ms. */
  function rounds(impls, runs, fn) {
    const names = Object.keys(impls);
    const out = Object.fromEntries(names.map((n) => [n, { add: [], check: [], del: [] }]));
    for (let run = -1; run < runs; run++) {
      const order = run % 2 === 0 ? names : [...names].reverse();
      for (const name of order) {
        const pod = newPod();
        try {
          const t = fn(impls[name], pod);
          if (run >= 0) for (const k of Object.keys(t)) out[name][k].push(t[k]);
        } finally {
          delPod(pod);
        }
      }
    }
    return Object.fromEntries(names.map((n) => [n, Object.fromEntries(Object.entries(out[n]).map(([k, v]) => [k, stats(v)]))]));
  }

  const results = {
    bench: 'multinic vs reference chain',
    date: new Date().toISOString(),
    host: { kernel: release(), cpus: cpus().length, cpu: cpus()[0]?.model, loadavgAtStart: loadavg().map(r1) },
    runs: RUNS,
    binary: { path: relative(ROOT, S.bin), bytes: Number(sh(['stat', '-c', '%s', S.bin]).trim()), commit: gitHead() },
    reference: `${REF} (${debVersion('containernetworking-plugins')}), libcni driver build/cnitool (${debVersion('golang-github-containernetworking-cni-dev') ?? 'libcni 1.1.2'})`,
  };

  function gitHead() {
    try {
      const head = sh(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD']).trim();
      const dirty = sh(['git', '-C', ROOT, 'status', '--porcelain', '--untracked-files=no', '--', 'src', 'plugins', 'scripts/build-bundle.mjs', 'scripts/build-binary.mjs']).trim() !== '';
      return dirty ? `${head}+dirty` : head;
    } catch {
      return null;
    }
  }
  function debVersion(pkg) {
    try {
      return sh(['dpkg-query', '-W', '-f', '${Version}', pkg]).trim() || null;
    } catch {
      return null;
    }
  }

  // 6. IPAM stores: its own etcd and API server stand-in on this netns's loopback.
  function storesBench() {
    const tsx = join(ROOT, 'node_modules/.bin/tsx');
    const r = spawnSync(tsx, [join(ROOT, 'bench/stores.ts'), '--bin', MULTINIC, '--runs', String(Math.max(30, RUNS))], {
      env: { PATH }, encoding: 'utf8', cwd: ROOT, maxBuffer: 64 << 20, timeout: 300_000,
    });
    if (r.status === 0) return JSON.parse(r.stdout);
    log(`bench/stores.ts failed (${r.status ?? r.signal}): ${r.stderr.slice(-2000)}`);
    return { error: (r.stderr || String(r.error)).slice(-2000) };
  }
  if (opts.only === 'stores') {
    log('6/6 IPAM stores only (bench/stores.ts)');
    results.stores = storesBench();
    results.loadavgAtEnd = loadavg().map(r1);
    return results;
  }

  // 1. one attachment
  log(`1/5 one attachment: ${Object.keys(IMPL1).length} variants x ${RUNS} runs of ADD, CHECK, DEL`);
  results.single = rounds(IMPL1, RUNS, (impl, pod) => {
    const env = cnitoolEnv(impl.cniPath, impl.conf, 'net1');
    const add = cnitool('add', 'one', pod, env).ms;
    const check = cnitool('check', 'one', pod, env, false);
    if (check.status !== 0) checkFailure(impl, check);
    return { add, check: check.ms, del: cnitool('del', 'one', pod, env).ms };
  });

  // 2. three attachments
  log(`2/5 three attachments: ${RUNS} runs each`);
  const IMPL3 = {
    'reference (3 cnitool runs)': { cniPath: REF, conf: confDir('ref3', [0, 1, 2].map((i) => attachment(`att${i}`, 'host-local', i))), three: true },
    'multinic meta (1 cnitool run)': {
      cniPath: OURS,
      conf: confDir('mn3', [meta('pod3', [0, 1, 2].map((i) => ({ ...attachment(`att${i}`, 'whereabouts', i), ifname: `net${i + 1}` })))]),
    },
  };
  results.three = rounds(IMPL3, RUNS, (impl, pod) => {
    const t = { add: 0, check: 0, del: 0 };
    if (impl.three) {
      for (const i of [0, 1, 2]) t.add += cnitool('add', `att${i}`, pod, cnitoolEnv(impl.cniPath, impl.conf, `net${i + 1}`)).ms;
      for (const i of [0, 1, 2]) {
        const c = cnitool('check', `att${i}`, pod, cnitoolEnv(impl.cniPath, impl.conf, `net${i + 1}`), false);
        if (c.status !== 0) checkFailure(impl, c);
        t.check += c.ms;
      }
      for (const i of [2, 1, 0]) t.del += cnitool('del', `att${i}`, pod, cnitoolEnv(impl.cniPath, impl.conf, `net${i + 1}`)).ms;
    } else {
      const env = cnitoolEnv(impl.cniPath, impl.conf, 'net1');
      for (const cmd of ['add', 'check', 'del']) {
        const c = cnitool(cmd, 'pod3', pod, env, cmd !== 'check');
        if (c.status !== 0) checkFailure(impl, c);
        t[cmd] = c.ms;
      }
    }
    return t;
  });

  // 3. bare start
  log(`3/5 bare start: CNI_COMMAND=VERSION x ${RUNS * 2}`);
  {
    const samples = { multinic: [], 'reference (Go macvlan)': [], 'node -e 0 (Node 20, for scale)': [] };
    const argv = { multinic: [MULTINIC], 'reference (Go macvlan)': [join(REF, 'macvlan')], 'node -e 0 (Node 20, for scale)': [process.execPath, '-e', '0'] };
    for (let i = -2; i < RUNS * 2; i++) {
      for (const [name, a] of Object.entries(argv)) {
        const r = timed(a, { CNI_COMMAND: 'VERSION' }, '');
        if (r.status !== 0) throw new Error(`${name} VERSION failed: ${r.stdout}`);
        if (i >= 0) samples[name].push(r.ms);
      }
    }
    results.version = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, stats(v)]));
  }

  // 5. peak RSS and the breakdown of one ADD (before the scale runs, which load the machine)
  log(`5/5 peak RSS and where an ADD's time goes (MULTINIC_TRACE=1, ${RUNS} runs)`);
  function directEnv(command, pod, ifName, extra = {}) {
    return { CNI_COMMAND: command, CNI_CONTAINERID: `bench-${pod}`, CNI_NETNS: `/run/netns/${pod}`, CNI_IFNAME: ifName, CNI_PATH: OURS, ...extra };
  }
  function rss(argv, env, stdin) {
    const r = timed([TIME, '-f', 'maxrss=%M', ...argv], env, stdin);
    const m = /maxrss=(\d+)/.exec(r.stderr);
    if (r.status !== 0 || !m) throw new Error(`${argv.join(' ')} failed: ${r.stderr}${r.stdout}`);
    return Number(m[1]) / 1024;
  }
  {
    const confs = {
      one: meta('one', [attachment('one', 'whereabouts', 0)]),
      three: meta('pod3', [0, 1, 2].map((i) => ({ ...attachment(`att${i}`, 'whereabouts', i), ifname: `net${i + 1}` }))),
    };
    const refOne = attachment('one', 'host-local', 0).plugins[0];
    const peak = { 'multinic meta ADD, 1 attachment': [], 'multinic meta ADD, 3 attachments': [], 'multinic VERSION': [], 'reference macvlan+host-local ADD': [], 'reference sbr ADD': [] };
    const traces = [];
    for (let i = 0; i < Math.min(RUNS, 10); i++) {
      for (const which of ['one', 'three']) {
        const pod = newPod();
        try {
          const stdin = JSON.stringify(confs[which]);
          peak[`multinic meta ADD, ${which === 'one' ? 1 : 3} attachment${which === 'one' ? '' : 's'}`].push(rss([MULTINIC], directEnv('ADD', pod, 'net1'), stdin));
          rss([MULTINIC], directEnv('DEL', pod, 'net1'), stdin);
        } finally {
          delPod(pod);
        }
      }
      peak['multinic VERSION'].push(rss([MULTINIC], { CNI_COMMAND: 'VERSION' }, ''));
      const pod = newPod();
      try {
        const env = { ...directEnv('ADD', pod, 'net1'), CNI_PATH: REF };
        const add = timed([TIME, '-f', 'maxrss=%M', join(REF, 'macvlan')], env, JSON.stringify({ cniVersion: '1.0.0', name: 'one', ...refOne }));
        peak['reference macvlan+host-local ADD'].push(Number(/maxrss=(\d+)/.exec(add.stderr)[1]) / 1024);
        const prevResult = JSON.parse(add.stdout);
        peak['reference sbr ADD'].push(rss([join(REF, 'sbr')], env, JSON.stringify({ cniVersion: '1.0.0', name: 'one', type: 'sbr', prevResult })));
        spawnSync(join(REF, 'macvlan'), { env: { PATH, ...env, CNI_COMMAND: 'DEL' }, input: JSON.stringify({ cniVersion: '1.0.0', name: 'one', ...refOne }) });
      } finally {
        delPod(pod);
      }
    }
    results.peakRssMb = Object.fromEntries(Object.entries(peak).map(([k, v]) => [k, stats(v)]));

    // Where the time of one ADD goes: the meta-plugin with one attachment, run directly.
    for (let i = -1; i < RUNS; i++) {
      const pod = newPod();
      try {
        const stdin = JSON.stringify(confs.one);
        for (const command of ['ADD', 'DEL']) {
          const t0 = now();
          const r = timed([MULTINIC], directEnv(command, pod, 'net1', { MULTINIC_TRACE: '1' }), stdin);
          const t1 = t0 + r.ms;
          const line = r.stderr.split('\n').find((l) => l.startsWith('multinic-trace '));
          if (r.status !== 0 || !line) throw new Error(`traced ${command} failed: ${r.stderr}${r.stdout}`);
          if (i >= 0) traces.push({ command, t0, t1, trace: JSON.parse(line.slice('multinic-trace '.length)) });
        }
      } finally {
        delPod(pod);
      }
    }
    results.breakdown = {};
    for (const command of ['ADD', 'DEL']) {
      const rows = traces.filter((t) => t.command === command).map(({ t0, t1, trace: x }) => {
        const origin = x.main - x.sinceOrigin;
        const d = x.phases.dispatch;
        return {
          'total (spawn to exit)': t1 - t0,
          'exec, before Node starts its clock': origin - t0,
          'Node/V8 init (to v8Start)': x.node.v8Start,
          'snapshot deserialise + environment': x.node.environment - x.node.v8Start,
          'bootstrap, pre-execution': x.node.bootstrapComplete - x.node.environment,
          'to main()': x.sinceOrigin - x.node.bootstrapComplete,
          'read stdin': x.phases.stdin.ms,
          'plugin work: addon dlopen': d.dlopen,
          'plugin work: sync fs (cache, pool, lock files)': d.fsSync,
          'plugin work: waiting (netlink replies, async I/O, timers)': d.idle,
          'plugin work: JS + sync native calls (setns, flock)': d.ms - d.dlopen - d.fsSync - d.idle,
          'print result': x.phases.output.ms,
          'exit (process.exit to reaped)': t1 - x.end,
        };
      });
      results.breakdown[command] = Object.fromEntries(Object.keys(rows[0]).map((k) => [k, stats(rows.map((r) => r[k]))]));
    }
  }

  // 4. scale cases
  if (!opts['skip-scale']) {
    log('4/5 scale: route scale (bench/routes.mjs)');
    // bench/routes.mjs makes its own node and pod namespaces.
    const routeRuns = Math.max(5, Math.ceil(RUNS / 3));
    const rr = spawnSync(process.execPath, [join(ROOT, 'bench/routes.mjs'), '--runs', String(routeRuns)], {
      env: { PATH, MULTINIC_BIN: MULTINIC, CNITOOL: S.cnitool },
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    if (rr.status !== 0) throw new Error(`bench/routes.mjs failed: ${rr.stderr}`);
    const routesJson = JSON.parse(rr.stdout);
    results.routeScale = {
      script: 'bench/routes.mjs',
      runs: routeRuns,
      cases: routesJson.results.map((x) => ({ impl: x.impl, routes: x.routes, add: stats(x.add.samples), del: stats(x.del.samples), leftAfterDel: x.leftAfterDel })),
      routeScale: routesJson.routeScale,
    };

    log('4/5 scale: pool scale, whereabouts against host-local');
    results.poolScale = poolScale([0, 1000, 10000, 50000], RUNS);
    log('4/5 scale: in-process IPAM parts (bench/ipam-scale.ts)');
    const tsx = join(ROOT, 'node_modules/.bin/tsx');
    const ir = spawnSync(tsx, [join(ROOT, 'bench/ipam-scale.ts'), '--skip-process'], { env: { PATH }, encoding: 'utf8', cwd: ROOT, maxBuffer: 64 << 20 });
    results.ipamInProcess = ir.status === 0 ? JSON.parse(ir.stdout) : { error: ir.stderr.slice(0, 2000) };

    log('4/5 scale: 32 and 64 pods at once');
    results.podsAtOnce = await podsAtOnce([32, 64]);
  }

  // ---------------------------------------------------------------- pool scale

  /** The pool as the whereabouts file store keeps it (bench/ipam-scale.ts writes the same). */
  function writeWhereaboutsPool(dir, n) {
    const allocations = {};
    let off = 1;
    for (let i = 0; i < n; i++, off++) {
      if (off % 7 === 0 && i < n / 2) off++;
      allocations[String(off)] = { id: `ctr${i}`.padEnd(64, '0'), podref: `default/pod-${i}`, ifname: 'net1' };
    }
    mkdirSync(join(dir, 'ippools'), { recursive: true, mode: 0o700 });
    const doc = { apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind: 'IPPool', metadata: { name: '10.200.0.0-16' }, spec: { range: '10.200.0.0/16', allocations } };
    writeFileSync(join(dir, 'ippools', '10.200.0.0-16.json'), JSON.stringify(doc), { mode: 0o600 });
    return Object.keys(allocations).map(Number);
  }

  /** host-local's store: one file per address, named by it, holding "<id>\r\n<ifname>". */
  function writeHostLocalPool(dir, offsets) {
    const net = join(dir, 'pool');
    mkdirSync(net, { recursive: true });
    offsets.forEach((off, i) => writeFileSync(join(net, `10.200.${off >> 8}.${off & 255}`), `${`ctr${i}`.padEnd(64, '0')}\r\nnet1`));
  }

  function poolScale(sizes, runs) {
    const out = [];
    for (const n of sizes) {
      const wa = join(S.work, `pool-wa-${n}`);
      const hl = join(S.work, `pool-hl-${n}`);
      writeHostLocalPool(hl, writeWhereaboutsPool(wa, n));
      const impls = {
        multinic: { argv: [join(S.plugins, 'whereabouts')], conf: { cniVersion: '1.0.0', name: 'pool', type: 'macvlan', ipam: { type: 'whereabouts', range: '10.200.0.0/16', data_dir: wa } } },
        reference: { argv: [join(REF, 'host-local')], conf: { cniVersion: '1.0.0', name: 'pool', type: 'macvlan', ipam: { type: 'host-local', ranges: [[{ subnet: '10.200.0.0/16' }]], dataDir: hl } } },
      };
      const s = { multinic: { add: [], del: [] }, reference: { add: [], del: [] } };
      for (let i = -1; i < runs; i++) {
        for (const name of i % 2 === 0 ? ['multinic', 'reference'] : ['reference', 'multinic']) {
          const { argv, conf } = impls[name];
          const env = { CNI_CONTAINERID: `pool-${n}-${i}`, CNI_NETNS: `/run/netns/${S.node}`, CNI_IFNAME: 'net1', CNI_PATH: OURS };
          const add = timed(argv, { ...env, CNI_COMMAND: 'ADD' }, JSON.stringify(conf));
          if (add.status !== 0) throw new Error(`${name} pool ADD failed: ${add.stdout}${add.stderr}`);
          const del = timed(argv, { ...env, CNI_COMMAND: 'DEL' }, JSON.stringify(conf));
          if (del.status !== 0) throw new Error(`${name} pool DEL failed: ${del.stdout}${del.stderr}`);
          if (i >= 0) {
            s[name].add.push(add.ms);
            s[name].del.push(del.ms);
          }
        }
      }
      out.push({ live: n, multinic: { add: stats(s.multinic.add), del: stats(s.multinic.del) }, reference: { add: stats(s.reference.add), del: stats(s.reference.del) } });
    }
    // 64 ADDs from 64 processes at once into one /24, then 64 DELs.
    const concurrent = {};
    for (const name of ['multinic', 'reference']) {
      const dir = join(S.work, `pool-conc-${name}`);
      const conf = name === 'multinic'
        ? { cniVersion: '1.0.0', name: 'conc', type: 'macvlan', ipam: { type: 'whereabouts', range: '10.201.0.0/24', data_dir: dir } }
        : { cniVersion: '1.0.0', name: 'conc', type: 'macvlan', ipam: { type: 'host-local', ranges: [[{ subnet: '10.201.0.0/24' }]], dataDir: dir } };
      const argv = name === 'multinic' ? join(S.plugins, 'whereabouts') : join(REF, 'host-local');
      concurrent[name] = concurrentIpam(argv, conf, 64);
    }
    return { cases: out, concurrent64: concurrent };
  }

  function concurrentIpam(argv, conf, count) {
    // spawnSync cannot overlap: a shell starts them together and waits for all.
    const script = join(S.work, `conc-${conf.ipam.type}.sh`);
    const confFile = join(S.work, `conc-${conf.ipam.type}.json`);
    writeFileSync(confFile, JSON.stringify(conf));
    const lines = ['#!/bin/sh', 'fails=0'];
    for (const cmd of ['ADD', 'DEL']) {
      lines.push(`for i in $(seq 1 ${count}); do CNI_COMMAND=${cmd} CNI_CONTAINERID=c$i CNI_NETNS=/run/netns/${S.node} CNI_IFNAME=net1 CNI_PATH=${OURS} ${argv} < ${confFile} > ${S.work}/conc-${cmd}-$i.out 2>&1 & done`);
      lines.push(`wait; echo ${cmd} $(date +%s%N)`);
    }
    writeFileSync(script, lines.join('\n') + '\n', { mode: 0o755 });
    const t0 = now();
    const startNs = BigInt(Date.now()) * 1000000n;
    const r = timed([script], {});
    const marks = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(' ')).map(([k, v]) => [k, BigInt(v)]));
    const addMs = Number(marks.ADD - startNs) / 1e6;
    const addrs = [];
    let addFailures = 0;
    for (let i = 1; i <= count; i++) {
      try {
        addrs.push(JSON.parse(readFileSync(join(S.work, `conc-ADD-${i}.out`), 'utf8')).ips[0].address);
      } catch {
        addFailures++;
      }
    }
    return { processes: count, addWallMs: r1(addMs), delWallMs: r1(Number(marks.DEL - marks.ADD) / 1e6), totalMs: r1(now() - t0), addFailures, duplicates: addrs.length - new Set(addrs).size };
  }

  // ---------------------------------------------------------------- pods at once

  async function podsAtOnce(sizes) {
    const impls = { reference: IMPL1['reference (host-local)'], multinic: IMPL1['multinic meta (whereabouts)'] };
    const out = [];
    for (const n of sizes) {
      const row = { pods: n };
      for (const name of ['reference', 'multinic']) {
        const impl = impls[name];
        const walls = { add: [], del: [] };
        let failures = 0;
        for (let round = 0; round < 3; round++) {
          const pods = Array.from({ length: n }, () => newPod());
          try {
            for (const cmd of ['add', 'del']) {
              const t = now();
              const rs = await Promise.all(pods.map((pod) => timedAsync([S.cnitool, cmd, 'one', `/run/netns/${pod}`], cnitoolEnv(impl.cniPath, impl.conf, 'net1'))));
              walls[cmd].push(now() - t);
              failures += rs.filter((x) => x.status !== 0).length;
            }
          } finally {
            pods.forEach(delPod);
          }
        }
        row[name] = { addWallMs: stats(walls.add), delWallMs: stats(walls.del), failures };
      }
      out.push(row);
    }
    return out;
  }

  if (!opts['skip-stores']) {
    log('6/6 IPAM stores: whereabouts on file, etcd, kubernetes (bench/stores.ts)');
    results.stores = storesBench();
  }

  results.loadavgAtEnd = loadavg().map(r1);
  results.checkFailures = checkFailures;
  return results;
}

// ---------------------------------------------------------------- report

/** --report <json>: the table and docs/benchmarks.md again from a results file (no measuring). */
const results = opts.report ? JSON.parse(readFileSync(resolve(opts.report), 'utf8')) : await measure();
const checkFailures = results.checkFailures ?? {};
const storesTable = storesReport(results.stores);

if (opts.only === 'stores') {
  // A partial run: its table only; docs/benchmarks.md and bench/results/ stay as they are.
  process.stdout.write(`\n${storesTable ?? '(no stores results)'}\n\n${JSON.stringify(results.stores, null, 2)}\n`);
  process.exit(results.stores?.error ? 1 : 0);
}

/** Part 6 as a table, and the etcd − file delta against issue 9's target; undefined if not run. */
function storesReport(st) {
  if (!st) return undefined;
  if (st.error) return `bench/stores.ts failed: ${st.error.trim().split('\n').pop()}`;
  const out = [];
  const c = (name) => st.concurrent[name];
  const ms = (s) => `${s.median} / ${s.p95}`;
  out.push(`| store | ADD median / p95 ms | DEL median / p95 ms | ADD − file, median ms (paired) | ${st.concurrent.file.processes} concurrent ADDs / DELs, wall ms | duplicates / failures / left after DEL | target |`);
  out.push('| --- | --- | --- | --- | --- | --- | --- |');
  for (const name of ['file', 'etcd', 'kubernetes']) {
    const s = st.sequential[name];
    const d = name === 'file' ? null : st.deltas[`${name}MinusFile`];
    const t = st.deltas.targetMs;
    const verdict = name !== 'etcd' ? '' : d.addMedianMs <= t ? `≤ ${t} ms ✓` : `≤ ${t} ms ✗ (${r1(d.addMedianMs - t)} ms over)`;
    out.push('| ' + [name, ms(s.add), ms(s.del), d ? `${d.addMedianMs} (${d.addPairedMedianMs})` : '–',
      `${c(name).addWallMs} / ${c(name).delWallMs}`, `${c(name).duplicates} / ${c(name).addFailures + c(name).delFailures} / ${c(name).leftAfterDel}`, verdict].join(' | ') + ' |');
  }
  return out.join('\n');
}

const ratio = (a, b) => (a && b ? Math.round((a / b) * 100) / 100 : null);
const lines = [];
const row = (cells) => lines.push(`| ${cells.join(' | ')} |`);
const ms = (s) => (s ? `${s.median} / ${s.p95}` : '–');
const tbl = (head) => {
  row(head);
  row(head.map(() => '---'));
};

tbl(['case', 'multinic median / p95 ms', 'reference median / p95 ms', 'ratio (median)', 'target']);
const single = results.single;
const refHl = single['reference (host-local)'];
const verdict = (r, target) => (r === null ? '' : r <= target ? `≤ ${target} ✓` : `≤ ${target} ✗ (${Math.round((r / target - 1) * 100)}% over)`);
for (const cmd of ['add', 'check', 'del']) {
  for (const [name, target] of [['multinic conflist (whereabouts)', cmd === 'add' ? 1 : null], ['multinic meta (whereabouts)', cmd === 'add' ? 1 : null]]) {
    const r = ratio(single[name][cmd].median, refHl[cmd].median);
    row([`1 attachment ${cmd.toUpperCase()}: ${name.replace(' (whereabouts)', '')} + whereabouts vs macvlan + host-local + sbr`, ms(single[name][cmd]), ms(refHl[cmd]), r, target ? verdict(r, target) : '']);
  }
}
for (const cmd of ['add', 'del']) {
  const a = single['multinic conflist (static)'][cmd];
  const b = single['reference (static)'][cmd];
  row([`1 attachment ${cmd.toUpperCase()}, static IPAM both sides (conflist)`, ms(a), ms(b), ratio(a.median, b.median), '']);
}
for (const cmd of ['add', 'check', 'del']) {
  const a = results.three['multinic meta (1 cnitool run)'][cmd];
  const b = results.three['reference (3 cnitool runs)'][cmd];
  const r = ratio(a.median, b.median);
  row([`3 attachments ${cmd.toUpperCase()}: meta-plugin (1 exec) vs 3 reference chains`, ms(a), ms(b), r, cmd === 'add' ? verdict(r, 0.5) : '']);
}
{
  const a = results.version.multinic;
  const b = results.version['reference (Go macvlan)'];
  row(['bare start, CNI_COMMAND=VERSION', ms(a), ms(b), ratio(a.median, b.median), '']);
  row(['(for scale: `node -e 0`, Node 20)', ms(results.version['node -e 0 (Node 20, for scale)']), '', '', '']);
}
{
  const p = results.peakRssMb;
  const a = p['multinic meta ADD, 1 attachment'].max;
  const b = p['reference macvlan+host-local ADD'].max;
  row(['peak RSS MB, ADD 1 attachment (max of runs)', `${a}`, `${b} (macvlan+host-local), sbr ${p['reference sbr ADD'].max}`, ratio(a, b), a <= 60 ? '≤ 60 MB ✓' : `≤ 60 MB ✗ (${r1(a - 60)} MB over)`]);
  row(['peak RSS MB, meta ADD 3 attachments / VERSION', `${p['multinic meta ADD, 3 attachments'].max} / ${p['multinic VERSION'].max}`, '', '', '']);
}
if (results.routeScale) {
  const c = results.routeScale.cases;
  for (const n of [1, 10, 100, 1000]) {
    const a = c.find((x) => x.impl === 'multinic' && x.routes === n);
    const b = c.find((x) => x.impl === 'reference' && x.routes === n);
    if (a && b) row([`route scale ADD, ${n} static route(s) (conflist, static IPAM; n=${results.routeScale.runs})`, ms(a.add), ms(b.add), ratio(a.add.median, b.add.median), '']);
  }
  for (const x of results.poolScale.cases) {
    row([`pool scale ADD, ${x.live} live allocations in a /16 (IPAM alone)`, ms(x.multinic.add), ms(x.reference.add), ratio(x.multinic.add.median, x.reference.add.median), '']);
  }
  const cc = results.poolScale.concurrent64;
  row(['64 concurrent IPAM ADDs, wall ms (dups / failures)', `${cc.multinic.addWallMs} (${cc.multinic.duplicates} / ${cc.multinic.addFailures})`, `${cc.reference.addWallMs} (${cc.reference.duplicates} / ${cc.reference.addFailures})`, ratio(cc.multinic.addWallMs, cc.reference.addWallMs), '']);
  for (const p of results.podsAtOnce) {
    for (const cmd of ['add', 'del']) {
      const a = p.multinic[`${cmd}WallMs`];
      const b = p.reference[`${cmd}WallMs`];
      row([`${p.pods} pods at once, ${cmd.toUpperCase()} wall (meta vs reference chain; failures ${p.multinic.failures}/${p.reference.failures})`, ms(a), ms(b), ratio(a.median, b.median), '']);
    }
  }
}
for (const [name, f] of Object.entries(checkFailures)) lines.push(`\nCHECK failed ${f.count} time(s) for ${name}: ${f.message}`);
const table = lines.join('\n');

const bl = [];
bl.push('| phase (multinic meta-plugin, 1 attachment, run directly) | ADD median ms | DEL median ms |');
bl.push('|---|---|---|');
for (const k of Object.keys(results.breakdown.ADD)) bl.push(`| ${k} | ${results.breakdown.ADD[k].median} | ${results.breakdown.DEL[k].median} |`);
const breakdown = bl.join('\n');

process.stdout.write(`\n${table}\n\nWhere multinic's time goes (MULTINIC_TRACE=1):\n\n${breakdown}\n${storesTable ? `\nIPAM stores (bench/stores.ts):\n\n${storesTable}\n` : ''}\nload average: start ${results.host.loadavgAtStart.join(' ')}, end ${results.loadavgAtEnd.join(' ')}\n`);

if (!opts['no-write']) {
  const stamp = results.date.replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
  const jsonPath = opts.report ? resolve(opts.report) : join(ROOT, 'bench/results', `bench-${stamp}.json`);
  mkdirSync(dirname(jsonPath), { recursive: true });
  if (!opts.report) writeFileSync(jsonPath, JSON.stringify(results, null, 2) + '\n');
  writeFileSync(join(ROOT, 'docs/benchmarks.md'), docs(table, breakdown, relative(ROOT, jsonPath)));
  log(opts.report ? 'wrote docs/benchmarks.md' : `wrote ${relative(ROOT, jsonPath)} and docs/benchmarks.md`);
}

function storesSection() {
  const st = results.stores;
  if (st.error) return `\n## IPAM stores\n\n${storesTable}\n`;
  const e = st.deltas.etcdMinusFile;
  return `
## IPAM stores

Issue 9's target: etcd adds at most ${st.deltas.targetMs} ms per ADD over the file store on loopback.
bench/stores.ts runs the whereabouts IPAM alone through the binary (the executable under the
name \`whereabouts\`, only the CNI variables and PATH in its environment) against each
\`datastore\`: \`file\`, \`etcd\` (Debian's etcd-server, one member on 127.0.0.1) and
\`kubernetes\` (the API server stand-in of the tests, test/helpers/fake-apiserver.ts, over
HTTPS on 127.0.0.1, in the benchmark's own process). ${st.runs} ADD+DEL pairs per store, the
stores alternating run by run; latency is process start to exit. "paired" is the median of the
per-round differences. Then ${st.concurrent.file.processes} ADDs from as many processes at once into one /24, then
as many DELs, with the addresses checked for duplicates and the pool for leftovers
(the kubernetes store retried ${st.kubernetesConflicts409} conflicts, 409s, on the way). Load average ${st.loadavg.join(' ')} when it ended.

${storesTable}

etcd − file per ADD: ${e.addMedianMs} ms (paired ${e.addPairedMedianMs} ms), target ≤ ${st.deltas.targetMs} ms: ${st.deltas.met ? 'met' : 'not met'}.
`;
}

function docs(table, breakdown, jsonRel) {
  // The reading of the figures is written by hand (bench/analysis.md) and kept with them.
  const analysis = join(ROOT, 'bench/analysis.md');
  const NOTES = existsSync(analysis) ? readFileSync(analysis, 'utf8').trim() : '(bench/analysis.md missing)';
  return `# Benchmarks

Produced by \`make bench\` (bench/bench.mjs), ${results.date.slice(0, 16).replace('T', ' ')} UTC, binary at ${results.binary.commit},
${results.host.cpus} CPU(s) (${results.host.cpu}), kernel ${results.host.kernel}, load average ${results.host.loadavgAtStart.join(' ')} at the start and ${results.loadavgAtEnd.join(' ')} at the end
(the machine was shared: absolute figures are noisy, ratios come from alternating runs of both sides).
Raw figures: [${jsonRel}](../${jsonRel}).

\`\`\`sh
make bench    # deps, test-deps, binary; then, as mk/bench.mk runs it:
nice -n -10 env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
  node bench/bench.mjs --runs 30 --bin dist/multinic --cnitool build/cnitool
node bench/bench.mjs --report ${jsonRel}   # this page again from the JSON
MULTINIC_TRACE=1 CNI_COMMAND=VERSION dist/multinic   # phase timings of one run on stderr
\`\`\`

What is compared: every run under an explicit, minimal environment (\`env -i\`), in a node
netns whose secondary NICs eth1..eth3 are veths, each pod a fresh netns, through the libcni
driver \`build/cnitool\` as a runtime calls plugins. Reference: ${results.reference}.
Each attachment is macvlan (bridge) on the secondary NIC + IPAM (a /24, gateway, 2 static
routes) + sbr. multinic runs it as the same conflist with its own plugins under the reference
names ("conflist": macvlan with in-process IPAM, then sbr: 2 execs), or as the meta-plugin with
the conflist as its delegate ("meta": 1 exec). IPAM: whereabouts (multinic's file store)
against host-local, both file-backed pools; also static against static. With three
attachments, the reference is the same conflist run by cnitool three times (one per NIC): what
Multus execs, minus Multus's own exec and API server round trip, plus two extra driver starts
(cnitool is a Go binary, ≈ a Multus exec each) — so the reference side is roughly what
Multus + the reference plugins cost, without the API server. Ratios are multinic / reference
medians; p95 next to each median; ${results.runs} runs per cell unless the row says otherwise.

${table}

## Where multinic's time goes

One ADD and one DEL of the meta-plugin with one attachment, run directly (no driver) with
\`MULTINIC_TRACE=1\` (src/delegate/entry.ts): Node's own start-up timeline plus time in
synchronous fs calls, addon loading and event-loop waits inside the plugin work; medians of
${results.runs} runs.

${breakdown}
${storesTable ? storesSection() : ''}
## Reading it, and what to try next

${NOTES}
`;
}
