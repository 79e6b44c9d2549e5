/**
 * whereabouts IPAM through the built binary, run directly as an IPAM plugin (through a
 * `whereabouts` symlink, as a runtime or a main plugin would exec it): concurrency across
 * real processes, stale-lock recovery after SIGKILL, error codes, path safety.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { multinicBin, processTmpRoot, run, runPluginDirect, type CniRun } from '../helpers/index.js';

let seq = 0;
function freshDir(): string {
  const dir = join(processTmpRoot(), `wb-${process.pid}-${seq++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function netconf(dataDir: string, ipam: Record<string, unknown> = {}): object {
  return {
    cniVersion: '1.0.0',
    name: 'wbnet',
    type: 'macvlan',
    ipam: { type: 'whereabouts', range: '10.77.0.0/24', data_dir: dataDir, ...ipam },
  };
}

function ipam(command: 'ADD' | 'DEL' | 'CHECK', conf: object, id: string, ifName = 'net1', pod = `pod-${id}`): Promise<CniRun> {
  return runPluginDirect(
    multinicBin(),
    {
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: '/var/run/netns/none',
      CNI_IFNAME: ifName,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod}`,
      CNI_PATH: '/opt/cni/bin',
    },
    conf,
    { as: 'whereabouts' },
  );
}

/** Runs jobs with at most `width` in flight. */
async function parallel<T>(n: number, width: number, job: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await job(i);
      }
    }),
  );
  return out;
}

function poolFile(dataDir: string, name = '10.77.0.0-24'): string {
  return join(dataDir, 'ippools', `${name}.json`);
}

function readPool(dataDir: string, name?: string): { spec: { range: string; allocations: Record<string, { id: string; podref: string; ifname: string }> } } {
  return JSON.parse(readFileSync(poolFile(dataDir, name), 'utf8'));
}

describe('whereabouts IPAM, run as a plugin binary', () => {
  it('ADD through the whereabouts name returns an address, CHECK passes, DEL releases it', async () => {
    const dir = freshDir();
    const conf = netconf(dir, { gateway: '10.77.0.254' });
    const add = await ipam('ADD', conf, 'a1');
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(add.json).toEqual({ cniVersion: '1.0.0', ips: [{ address: '10.77.0.1/24', gateway: '10.77.0.254' }], dns: {} });
    expect(readPool(dir).spec.allocations).toEqual({ '1': { id: 'a1', podref: 'default/pod-a1', ifname: 'net1' } });
    const check = await ipam('CHECK', { ...conf, prevResult: add.json }, 'a1');
    expect(check.exitCode, check.stdout).toBe(0);
    const del = await ipam('DEL', conf, 'a1');
    expect(del.exitCode, del.stdout).toBe(0);
    expect(readPool(dir).spec.allocations).toEqual({});
    expect((await ipam('DEL', conf, 'a1')).exitCode).toBe(0);
  });

  it('200 ADDs from 16 parallel processes into one /24 give 200 distinct addresses; 200 DELs empty the pool', async () => {
    const dir = freshDir();
    const conf = netconf(dir);
    const adds = await parallel(200, 16, (i) => ipam('ADD', conf, `ctr${i}`));
    const failed = adds.filter((r) => r.exitCode !== 0);
    expect(failed.map((r) => r.stdout + r.stderr)).toEqual([]);
    const addrs = adds.map((r) => r.json.ips[0].address as string);
    expect(new Set(addrs).size).toBe(200);
    const allocs = readPool(dir).spec.allocations;
    expect(Object.keys(allocs)).toHaveLength(200);
    // the lowest 200 addresses: nothing skipped, nothing doubled
    expect(Object.keys(allocs).map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));

    const dels = await parallel(200, 16, (i) => ipam('DEL', conf, `ctr${i}`));
    expect(dels.filter((r) => r.exitCode !== 0).map((r) => r.stdout)).toEqual([]);
    expect(readPool(dir).spec.allocations).toEqual({});
    expect(readdirSync(join(dir, 'overlappingrangeipreservations'))).toEqual([]);
  });

  it('a process killed with SIGKILL while holding the lock: the next ADD proceeds after stale-lock recovery, the pool intact', async () => {
    const dir = freshDir();
    const conf = netconf(dir, { range: '10.78.0.0/16', enable_overlapping_ranges: false });
    // A big pool keeps the lock held long enough (parse + write of 50,000 entries) to kill in it.
    const allocations: Record<string, object> = {};
    for (let i = 1; i <= 50_000; i++) allocations[String(i)] = { id: `old${i}`, podref: `default/old${i}`, ifname: 'net1' };
    mkdirSync(join(dir, 'ippools'), { recursive: true, mode: 0o700 });
    const file = poolFile(dir, '10.78.0.0-16');
    writeFileSync(
      file,
      JSON.stringify({ apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind: 'IPPool', metadata: { name: '10.78.0.0-16' }, spec: { range: '10.78.0.0/16', allocations } }),
      { mode: 0o600 },
    );
    const lockDir = join(dir, 'pools.lock');

    let killedHolding = false;
    for (let attempt = 0; attempt < 20 && !killedHolding; attempt++) {
      const child = spawn(multinicBin(), [], {
        argv0: 'whereabouts',
        env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_CONTAINERID: `victim${attempt}`, CNI_NETNS: '/x', CNI_IFNAME: 'net1' },
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      child.stdin.end(JSON.stringify({ ...conf, type: 'whereabouts' }));
      const exited = new Promise((r) => child.on('exit', r));
      while (child.exitCode === null && child.signalCode === null && !existsSync(lockDir)) await new Promise((r) => setTimeout(r, 1));
      child.kill('SIGKILL');
      await exited;
      killedHolding = existsSync(lockDir);
    }
    expect(killedHolding, 'a victim was killed while holding the lock').toBe(true);

    const started = Date.now();
    const add = await ipam('ADD', conf, 'survivor');
    const recoveryMs = Date.now() - started;
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    // stale after 3 s without a refresh: recovery takes seconds, not tens of seconds
    expect(recoveryMs).toBeLessThan(10_000);
    const pool = readPool(dir, '10.78.0.0-16');
    for (let i = 1; i <= 50_000; i += 997) expect(pool.spec.allocations[String(i)]).toEqual({ id: `old${i}`, podref: `default/old${i}`, ifname: 'net1' });
    const victims = Object.values(pool.spec.allocations).filter((a) => a.id.startsWith('victim')).length;
    expect(Object.keys(pool.spec.allocations).length).toBe(50_001 + victims);
    expect(Object.values(pool.spec.allocations).some((a) => a.id === 'survivor')).toBe(true);
    expect(readdirSync(join(dir, 'ippools')).filter((f) => f.endsWith('.json'))).toEqual(['10.78.0.0-16.json']);
  });

  it('a pool file that does not parse fails ADD and DEL with code 5 naming it, and is not reset', async () => {
    const dir = freshDir();
    const conf = netconf(dir);
    expect((await ipam('ADD', conf, 'x1')).exitCode).toBe(0);
    writeFileSync(poolFile(dir), '{"kind": "IPPool", ');
    for (const cmd of ['ADD', 'DEL'] as const) {
      const r = await ipam(cmd, conf, 'x2');
      expect(r.exitCode).not.toBe(0);
      expect(r.json.code).toBe(5);
      expect(r.json.msg).toContain(poolFile(dir));
    }
    expect(readFileSync(poolFile(dir), 'utf8')).toBe('{"kind": "IPPool", ');
  });

  it('bad config is code 7 naming the key and value', async () => {
    const dir = freshDir();
    const r = await ipam('ADD', netconf(dir, { range: '10.77.0.0/24', exclude: ['10.77.0.0/24', 'not-a-cidr'] }), 'b1');
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toContain('ipam.exclude[1]');
    expect(r.json.msg).toContain('not-a-cidr');
  });

  it('no input makes a path outside data_dir', async () => {
    const root = freshDir();
    const dir = join(root, 'data');
    const r = await ipam('ADD', netconf(dir, { network_name: '../../escape' }), 'p1');
    expect(r.json.code).toBe(7);
    expect(r.json.msg).toContain('ipam.network_name');
    expect(readdirSync(root)).toEqual([]);
  });

  it('dual stack ipRanges: one address per range in order; an exhausted range fails the ADD and writes nothing', async () => {
    const dir = freshDir();
    const conf = netconf(dir, { range: undefined, ipRanges: [{ range: 'fd00:77::/64' }, { range: '10.79.0.0/30' }] });
    const a = await ipam('ADD', conf, 'd1');
    expect(a.json.ips.map((i: { address: string }) => i.address)).toEqual(['fd00:77::1/64', '10.79.0.1/30']);
    expect((await ipam('ADD', conf, 'd2')).exitCode).toBe(0);
    const full = await ipam('ADD', conf, 'd3');
    expect(full.exitCode).not.toBe(0);
    expect(full.json.msg).toContain('range 10.79.0.0/30 (start 10.79.0.1, end 10.79.0.2, excludes none)');
    expect(Object.keys(readPool(dir, 'fd00-77---64').spec.allocations)).toEqual(['1', '2']);
  });
  it('multinic pool export prints IPPool YAML with the same allocations, and import restores them', async () => {
    const dir = freshDir();
    const conf = netconf(dir, { network_name: 'green' });
    for (const id of ['e1', 'e2', 'e3']) expect((await ipam('ADD', conf, id)).exitCode).toBe(0);
    const cli = (...args: string[]) => run([multinicBin(), 'pool', ...args], { env: { PATH: process.env.PATH } });
    const exp = await cli('export', '--data-dir', dir, '--namespace', 'kube-system');
    expect(exp.exitCode, exp.stderr).toBe(0);
    expect(exp.stdout).toContain('kind: "IPPool"');
    expect(exp.stdout).toContain('name: "green-10.77.0.0-24"');
    const target = freshDir();
    const yamlFile = join(target, 'pools.yaml');
    writeFileSync(yamlFile, exp.stdout);
    const imp = await cli('import', yamlFile, '--data-dir', join(target, 'data'));
    expect(imp.exitCode, imp.stderr).toBe(0);
    expect(readPool(join(target, 'data'), 'green-10.77.0.0-24')).toEqual(readPool(dir, 'green-10.77.0.0-24'));
    const show = await cli('show', 'green-10.77.0.0-24', '--data-dir', join(target, 'data'));
    expect(show.stdout).toContain('10.77.0.2  default/pod-e2  e2         net1');
    const rel = await cli('release', '10.77.0.2', '--data-dir', dir);
    expect(rel.stdout).toContain('released green-10.77.0.0-24 10.77.0.2');
    expect(Object.keys(readPool(dir, 'green-10.77.0.0-24').spec.allocations)).toEqual(['1', '3']);
  });
});
