/**
 * `multinic install` / `uninstall` / `validate` as the built binary runs them, under `env -i`,
 * against a temporary --host-root: with and without a primary conf, twice in a row, and while
 * a loop keeps executing the installed binary (an upgrade must never make it fail to start).
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { multinicBin, REPO_ROOT, run } from '../helpers/index.js';
import { processTmpRoot } from '../helpers/paths.js';

let root: string;

function tree(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(dir).sort()) {
    const rel = `${prefix}/${name}`;
    const st = fs.lstatSync(join(dir, name));
    if (st.isSymbolicLink()) out.push(`${rel} -> ${fs.readlinkSync(join(dir, name))}`);
    else if (st.isDirectory()) out.push(`${rel}/`, ...tree(join(dir, name), rel));
    else out.push(rel);
  }
  return out;
}

/** The binary with an empty environment, as a DaemonSet's bare entrypoint would have. */
function multinic(args: string[], env: Record<string, string> = {}) {
  return run(['/usr/bin/env', '-i', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), multinicBin(), ...args], { timeoutMs: 60_000 });
}

const primary = {
  cniVersion: '0.4.0',
  name: 'cluster',
  plugins: [{ type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.244.0.0/24' } }],
};

beforeEach(() => {
  root = fs.mkdtempSync(join(processTmpRoot(), 'hostroot-'));
});

afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

describe('multinic install / uninstall (the binary, env -i)', () => {
  it('without a primary conf: binary and links, not ready; twice the same; uninstall restores the host root', async () => {
    const before = tree(root);
    const first = await multinic(['install', `--host-root=${root}`]);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/no primary network conf/);
    const after = tree(root);
    expect(after).toContain('/opt/cni/bin/multinic');
    expect(after).toContain('/opt/cni/bin/static -> multinic');
    expect(after).not.toContain('/etc/cni/net.d/00-multinic.conflist');
    expect((await multinic(['install', '--check', `--host-root=${root}`])).exitCode).toBe(1);

    const second = await multinic(['install', `--host-root=${root}`]);
    expect(second.exitCode, second.stderr).toBe(0);
    expect(second.stdout).toMatch(/up to date/);
    expect(tree(root)).toEqual(after);

    const un = await multinic(['uninstall', `--host-root=${root}`]);
    expect(un.exitCode, un.stderr).toBe(0);
    expect(tree(root)).toEqual(before);
  });

  it('with a primary conf: the conflist wraps it, the installed binary runs as every plugin; twice the same; uninstall', async () => {
    fs.mkdirSync(join(root, 'etc/cni/net.d'), { recursive: true });
    fs.writeFileSync(join(root, 'etc/cni/net.d/10-bridge.conflist'), JSON.stringify(primary));
    const before = tree(root);
    for (let i = 0; i < 2; i++) {
      const r = await multinic(['install', `--host-root=${root}`]);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    const conflist = JSON.parse(fs.readFileSync(join(root, 'etc/cni/net.d/00-multinic.conflist'), 'utf8'));
    expect(conflist.cniVersion).toBe('0.4.0');
    expect(conflist.plugins[0]).toMatchObject({ type: 'multinic', clusterNetwork: '/etc/cni/net.d/10-bridge.conflist', delegates: [primary] });
    expect((await multinic(['install', '--check', `--host-root=${root}`])).exitCode).toBe(0);
    expect((await multinic(['validate', join(root, 'etc/cni/net.d/00-multinic.conflist')])).exitCode).toBe(0);

    for (const name of ['multinic', 'macvlan', 'static']) {
      const v = await run(['/usr/bin/env', '-i', 'CNI_COMMAND=VERSION', join(root, 'opt/cni/bin', name)]);
      expect(v.exitCode, `${name}: ${v.stderr}`).toBe(0);
      expect(JSON.parse(v.stdout).supportedVersions).toContain('1.0.0');
    }

    const un = await multinic(['uninstall', `--host-root=${root}`]);
    expect(un.exitCode, un.stderr).toBe(0);
    expect(tree(root)).toEqual(before);
  });

  it('replacing the binary while a loop keeps executing it never makes it fail to start', async () => {
    const first = await multinic(['install', `--host-root=${root}`, '--skip-config']);
    expect(first.exitCode, first.stderr).toBe(0);
    const installed = join(root, 'opt/cni/bin/multinic');
    let stop = false;
    let runs = 0;
    const failures: string[] = [];
    const loop = (async () => {
      while (!stop) {
        for (const name of ['multinic', 'static']) {
          const r = await run(['/usr/bin/env', '-i', 'CNI_COMMAND=VERSION', join(root, 'opt/cni/bin', name)], { timeoutMs: 30_000 });
          runs++;
          if (r.exitCode !== 0 || !r.stdout.includes('supportedVersions')) failures.push(`${name}: exit ${r.exitCode} ${r.stderr}${r.stdout}`);
        }
      }
    })();
    // An inode number alone can come back: the kernel reuses the freed one of the file replaced.
    const files = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = await multinic(['install', `--host-root=${root}`, '--skip-config', '--force']);
      expect(r.exitCode, r.stderr).toBe(0);
      const st = fs.statSync(installed, { bigint: true });
      files.add(`${st.ino}:${st.ctimeNs}`);
    }
    stop = true;
    await loop;
    expect(files.size).toBe(4); // each --force install put a new file in place
    expect(runs).toBeGreaterThan(4);
    expect(failures).toEqual([]);
    expect(fs.readdirSync(join(root, 'opt/cni/bin')).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });
});

describe('multinic validate (the binary)', () => {
  it('passes every example NAD in conf/', async () => {
    const dir = join(REPO_ROOT, 'conf/examples');
    const files = fs.readdirSync(dir).map((n) => join(dir, n));
    const r = await multinic(['validate', ...files, join(REPO_ROOT, 'conf/20-daemonset.yaml')]);
    expect(r.exitCode, r.stderr).toBe(0);
  });

  it('reports a broken NAD precisely and exits non-zero', async () => {
    const file = join(root, 'broken.yaml');
    fs.writeFileSync(
      file,
      'apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: storage\nspec:\n  config: \'{"cniVersion":"1.0.0","type":"macvlan","master":"eth1","mtu":9000,"ipam":{"type":"static","routes":[{"dst":"10.30.0.0/33"}]}}\'\n',
    );
    const r = await multinic(['validate', file]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(`error: ${file} (NetworkAttachmentDefinition storage).spec.config: invalid ipam.routes[0].dst "10.30.0.0/33"`);
  });
});
