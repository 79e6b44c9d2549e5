import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CONFLIST_NAME,
  checkInstalled,
  defaultInstallOptions,
  findPrimary,
  install,
  installAndWatch,
  type InstallOptions,
  uninstall,
} from '../../../src/cli/install.js';
import { validateText } from '../../../src/cli/validate.js';
import { builtinTypes } from '../../../src/delegate/registry.js';

let root: string;
let source: string;
let lines: string[];

/** Every path under dir, with a marker for symlinks, sorted: the whole state of a host root. */
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

function opts(extra: Partial<InstallOptions> = {}): InstallOptions {
  return defaultInstallOptions({ hostRoot: root, source, env: {}, log: (l) => lines.push(l), ...extra });
}

const flannel = {
  cniVersion: '0.4.0',
  name: 'cbr0',
  plugins: [
    { type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } },
    { type: 'portmap', capabilities: { portMappings: true } },
    { type: 'bandwidth', capabilities: { bandwidth: true } },
  ],
};

function writePrimary(name: string, conf: object): void {
  fs.mkdirSync(join(root, 'etc/cni/net.d'), { recursive: true });
  fs.writeFileSync(join(root, 'etc/cni/net.d', name), JSON.stringify(conf));
}

function readConflist(): { cniVersion: string; name: string; plugins: Array<Record<string, unknown>> } {
  return JSON.parse(fs.readFileSync(join(root, 'etc/cni/net.d', CONFLIST_NAME), 'utf8'));
}

beforeEach(() => {
  root = fs.mkdtempSync(join(tmpdir(), 'multinic-install-'));
  source = join(root, 'multinic-build');
  fs.writeFileSync(source, '#!/bin/sh\necho multinic\n', { mode: 0o755 });
  lines = [];
});

afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

describe('install without a primary network conf', () => {
  it('installs binary, links and flat file, writes no conflist, is not ready; twice the same; uninstall leaves nothing', () => {
    const before = tree(root);
    expect(install(opts())).toBe(false);
    const after = tree(root);
    expect(after).toContain('/opt/cni/bin/multinic');
    for (const t of builtinTypes().filter((t) => t !== 'multinic')) expect(after).toContain(`/opt/cni/bin/${t} -> multinic`);
    expect(after).toContain('/etc/cni/net.d/whereabouts.d/whereabouts.conf');
    expect(after).not.toContain(`/etc/cni/net.d/${CONFLIST_NAME}`);
    expect(after).not.toContain('/etc/cni/net.d/multinic.d/ready');
    expect(fs.statSync(join(root, 'opt/cni/bin/multinic')).mode & 0o777).toBe(0o755);
    expect(fs.readFileSync(join(root, 'opt/cni/bin/multinic'), 'utf8')).toBe(fs.readFileSync(source, 'utf8'));
    expect(checkInstalled(opts())).toContain('/etc/cni/net.d/multinic.d/ready is missing');

    expect(install(opts())).toBe(false);
    expect(tree(root)).toEqual(after);

    uninstall(opts());
    expect(tree(root)).toEqual(before);
  });
});

describe('install with a primary network conf', () => {
  it('wraps the alphabetically first conf as clusterNetwork and delegates[0], in its cniVersion, and is ready', () => {
    writePrimary('10-flannel.conflist', flannel);
    writePrimary('20-other.conf', { cniVersion: '1.0.0', name: 'other', type: 'bridge' });
    writePrimary('05-notes.txt', { cniVersion: '1.0.0', name: 'x', type: 'x' });
    expect(install(opts())).toBe(true);
    const c = readConflist();
    expect(c.cniVersion).toBe('0.4.0');
    expect(c.plugins).toHaveLength(1);
    expect(c.plugins[0]).toMatchObject({
      type: 'multinic',
      clusterNetwork: '/etc/cni/net.d/10-flannel.conflist',
      delegates: [flannel],
      binDir: '/opt/cni/bin',
      capabilities: { portMappings: true, bandwidth: true },
    });
    expect(c.plugins[0]!.kubeconfig).toBeUndefined();
    expect(fs.existsSync(join(root, 'etc/cni/net.d/multinic.d/ready'))).toBe(true);
    expect(checkInstalled(opts())).toEqual([]);
  });

  it('writes a conflist the meta-plugin accepts as ADD would read it', async () => {
    writePrimary('10-bridge.conf', { cniVersion: '1.0.0', name: 'cluster', type: 'bridge', bridge: 'cni0', ipam: { type: 'host-local', subnet: '10.244.0.0/24' } });
    install(opts());
    const text = fs.readFileSync(join(root, 'etc/cni/net.d', CONFLIST_NAME), 'utf8');
    const findings = await validateText(text, CONFLIST_NAME);
    expect(findings.filter((f) => f.level === 'error')).toEqual([]);
  });

  it('is idempotent: a second run changes no file', () => {
    writePrimary('10-flannel.conflist', flannel);
    install(opts());
    const stamp = (p: string) => fs.statSync(join(root, p)).mtimeMs;
    const files = ['opt/cni/bin/multinic', `etc/cni/net.d/${CONFLIST_NAME}`, 'etc/cni/net.d/multinic.d/ready'];
    const before = files.map(stamp);
    const treeBefore = tree(root);
    expect(install(opts())).toBe(true);
    expect(files.map(stamp)).toEqual(before);
    expect(tree(root)).toEqual(treeBefore);
    expect(lines.filter((l) => l.includes('up to date')).length).toBeGreaterThan(0);
  });

  it('follows the primary when it changes, and uninstall leaves the primary and removes the rest', () => {
    writePrimary('10-flannel.conflist', flannel);
    const before = tree(root);
    install(opts());
    writePrimary('10-flannel.conflist', { ...flannel, cniVersion: '1.0.0' });
    install(opts());
    expect(readConflist().cniVersion).toBe('1.0.0');
    writePrimary('05-calico.conflist', { cniVersion: '0.3.1', name: 'k8s-pod-network', plugins: [{ type: 'calico' }] });
    install(opts());
    expect(readConflist().plugins[0]!.clusterNetwork).toBe('/etc/cni/net.d/05-calico.conflist');
    fs.rmSync(join(root, 'etc/cni/net.d/05-calico.conflist'));
    uninstall(opts());
    expect(tree(root)).toEqual(before);
  });

  it('skips confs that do not parse and multinic confs; rejects a primary of an unsupported version', () => {
    writePrimary('01-broken.conf', { name: 'x' });
    fs.writeFileSync(join(root, 'etc/cni/net.d/02-garbage.conflist'), '{not json');
    writePrimary('03-multus-like.conf', { cniVersion: '1.0.0', name: 'm', type: 'multinic', delegates: [] });
    writePrimary('10-flannel.conflist', flannel);
    expect(findPrimary(join(root, 'etc/cni/net.d'), 'auto')?.file).toBe('10-flannel.conflist');
    writePrimary('04-old.conf', { cniVersion: '0.2.0', name: 'old', type: 'bridge' });
    expect(() => findPrimary(join(root, 'etc/cni/net.d'), 'auto')).toThrow(/04-old.conf has cniVersion "0.2.0"/);
    expect(findPrimary(join(root, 'etc/cni/net.d'), '10-flannel.conflist')?.file).toBe('10-flannel.conflist');
  });

  it('--skip-config writes no conflist and is ready after the binary', () => {
    writePrimary('10-flannel.conflist', flannel);
    expect(install(opts({ skipConfig: true }))).toBe(true);
    expect(fs.existsSync(join(root, 'etc/cni/net.d', CONFLIST_NAME))).toBe(false);
    expect(fs.existsSync(join(root, 'etc/cni/net.d/multinic.d/ready'))).toBe(true);
  });

  it('honours --cni-bin-dir and --cni-conf-dir', () => {
    fs.mkdirSync(join(root, 'etc/kubernetes/cni/net.d'), { recursive: true });
    fs.writeFileSync(join(root, 'etc/kubernetes/cni/net.d/10-a.conf'), JSON.stringify({ cniVersion: '1.0.0', name: 'a', type: 'bridge' }));
    install(opts({ cniBinDir: '/usr/libexec/cni', cniConfDir: '/etc/kubernetes/cni/net.d' }));
    expect(fs.existsSync(join(root, 'usr/libexec/cni/multinic'))).toBe(true);
    const c = JSON.parse(fs.readFileSync(join(root, 'etc/kubernetes/cni/net.d', CONFLIST_NAME), 'utf8'));
    expect(c.plugins[0]).toMatchObject({ binDir: '/usr/libexec/cni', clusterNetwork: '/etc/kubernetes/cni/net.d/10-a.conf' });
  });
});

describe('what install does not own', () => {
  it('keeps a plugin of a built-in name that is not ours; --replace-plugins replaces it and uninstall restores it', () => {
    fs.mkdirSync(join(root, 'opt/cni/bin'), { recursive: true });
    fs.writeFileSync(join(root, 'opt/cni/bin/macvlan'), 'reference macvlan', { mode: 0o755 });
    install(opts());
    expect(fs.readFileSync(join(root, 'opt/cni/bin/macvlan'), 'utf8')).toBe('reference macvlan');
    uninstall(opts());
    expect(fs.readFileSync(join(root, 'opt/cni/bin/macvlan'), 'utf8')).toBe('reference macvlan');

    install(opts({ replacePlugins: true }));
    expect(fs.readlinkSync(join(root, 'opt/cni/bin/macvlan'))).toBe('multinic');
    install(opts({ replacePlugins: true }));
    uninstall(opts());
    expect(fs.lstatSync(join(root, 'opt/cni/bin/macvlan')).isFile()).toBe(true);
    expect(fs.readFileSync(join(root, 'opt/cni/bin/macvlan'), 'utf8')).toBe('reference macvlan');
    expect(tree(root)).toEqual(['/multinic-build', '/opt/', '/opt/cni/', '/opt/cni/bin/', '/opt/cni/bin/macvlan']);
  });

  it('keeps a whereabouts flat file someone else wrote', () => {
    fs.mkdirSync(join(root, 'etc/cni/net.d/whereabouts.d'), { recursive: true });
    fs.writeFileSync(join(root, 'etc/cni/net.d/whereabouts.d/whereabouts.conf'), '{"datastore":"kubernetes"}');
    install(opts());
    uninstall(opts());
    expect(fs.readFileSync(join(root, 'etc/cni/net.d/whereabouts.d/whereabouts.conf'), 'utf8')).toBe('{"datastore":"kubernetes"}');
  });

  it('uninstall keeps a file changed since install wrote it', () => {
    writePrimary('10-flannel.conflist', flannel);
    install(opts());
    fs.appendFileSync(join(root, 'etc/cni/net.d', CONFLIST_NAME), ' ');
    const { kept } = uninstall(opts());
    expect(kept).toEqual([`/etc/cni/net.d/${CONFLIST_NAME}`]);
    expect(fs.existsSync(join(root, 'etc/cni/net.d', CONFLIST_NAME))).toBe(true);
    expect(fs.existsSync(join(root, 'opt/cni/bin/multinic'))).toBe(false);
  });
});

describe('kubeconfig for the service account', () => {
  function saDir(): string {
    const dir = join(root, 'sa');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(join(dir, 'ca.crt'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    fs.writeFileSync(join(dir, 'token'), 'secret-token');
    return dir;
  }

  it('names the token file (the projected volume on the host), embeds the CA, and is referenced by the conflist and flat file', () => {
    writePrimary('10-flannel.conflist', flannel);
    const uid = '5c1f1e4e-0b5e-4a4c-9a55-2f1d1f3c0a11';
    install(opts({ serviceAccountDir: saDir(), env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443', POD_UID: uid } }));
    const path = join(root, 'etc/cni/net.d/multinic.d/multinic.kubeconfig');
    expect(fs.statSync(path).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(path, 'utf8');
    expect(text).not.toContain('secret-token');
    const kc = JSON.parse(text);
    expect(kc.clusters[0].cluster.server).toBe('https://10.96.0.1:443');
    expect(Buffer.from(kc.clusters[0].cluster['certificate-authority-data'], 'base64').toString()).toContain('BEGIN CERTIFICATE');
    expect(kc.users[0].user.tokenFile).toBe(`/var/lib/kubelet/pods/${uid}/volumes/kubernetes.io~projected/multinic-token/token`);
    expect(kc['current-context']).toBe('multinic');
    expect(readConflist().plugins[0]!.kubeconfig).toBe('/etc/cni/net.d/multinic.d/multinic.kubeconfig');
    const flat = JSON.parse(fs.readFileSync(join(root, 'etc/cni/net.d/whereabouts.d/whereabouts.conf'), 'utf8'));
    expect(flat).toEqual({ datastore: 'file', data_dir: '/var/lib/cni/whereabouts', kubernetes: { kubeconfig: '/etc/cni/net.d/multinic.d/multinic.kubeconfig' } });
  });

  it('brackets an IPv6 API server address; an explicit --token-file wins', () => {
    install(opts({ serviceAccountDir: saDir(), tokenFile: '/run/tok', env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' } }));
    const kc = JSON.parse(fs.readFileSync(join(root, 'etc/cni/net.d/multinic.d/multinic.kubeconfig'), 'utf8'));
    expect(kc.clusters[0].cluster.server).toBe('https://[fd00::1]:6443');
    expect(kc.users[0].user.tokenFile).toBe('/run/tok');
  });

  it('fails, naming the path, when the CA is missing', () => {
    expect(() => install(opts({ serviceAccountDir: join(root, 'nope'), env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' } }))).toThrow(/nope\/ca.crt/);
  });
});

describe('watch mode', () => {
  it('writes the conflist when a primary appears, follows it, and stops on abort', async () => {
    const ac = new AbortController();
    fs.mkdirSync(join(root, 'etc/cni/net.d'), { recursive: true });
    const done = installAndWatch(opts(), 200, ac.signal);
    const waitFor = async (cond: () => boolean) => {
      for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(cond()).toBe(true);
    };
    expect(fs.existsSync(join(root, 'etc/cni/net.d', CONFLIST_NAME))).toBe(false);
    writePrimary('10-flannel.conflist', flannel);
    await waitFor(() => fs.existsSync(join(root, 'etc/cni/net.d/multinic.d/ready')));
    expect(readConflist().cniVersion).toBe('0.4.0');
    writePrimary('10-flannel.conflist', { ...flannel, cniVersion: '1.0.0' });
    await waitFor(() => readConflist().cniVersion === '1.0.0');
    fs.rmSync(join(root, 'etc/cni/net.d', CONFLIST_NAME));
    await waitFor(() => fs.existsSync(join(root, 'etc/cni/net.d', CONFLIST_NAME)));
    ac.abort();
    await done;
  });
});
