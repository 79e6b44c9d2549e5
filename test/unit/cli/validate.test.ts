import * as fs from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type Finding, validateFile, validateText } from '../../../src/cli/validate.js';

const CONF = fileURLToPath(new URL('../../../conf', import.meta.url));

function yamlFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [join(dir, e.name)] : []));
}

const errorsOf = (found: Finding[]): Finding[] => found.filter((f) => f.level === 'error');

function nad(config: unknown, name = 'net-a'): string {
  return [
    'apiVersion: k8s.cni.cncf.io/v1',
    'kind: NetworkAttachmentDefinition',
    'metadata:',
    `  name: ${name}`,
    'spec:',
    '  config: |',
    ...(typeof config === 'string' ? config : JSON.stringify(config)).split('\n').map((l) => `    ${l}`),
  ].join('\n');
}

describe('conf/', () => {
  const files = yamlFiles(CONF);

  it('holds the CRD, RBAC, DaemonSet and the four example NADs', () => {
    const kinds = files.flatMap((f) => parseAllDocuments(fs.readFileSync(f, 'utf8')).map((d) => (d.toJS() as { kind: string }).kind));
    for (const k of ['CustomResourceDefinition', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'DaemonSet']) expect(kinds).toContain(k);
    expect(kinds.filter((k) => k === 'NetworkAttachmentDefinition').length).toBeGreaterThanOrEqual(4);
  });

  it.each(files.map((f) => [f.slice(CONF.length + 1), f]))('%s parses and carries what Kubernetes requires of its kind', async (_name, file) => {
    for (const doc of parseAllDocuments(fs.readFileSync(file, 'utf8'))) expect(doc.errors).toEqual([]);
    expect(errorsOf(await validateFile(file))).toEqual([]);
  });

  it('the DaemonSet runs on every node, on the host network, with the CNI mounts and no privilege', () => {
    const ds = parseAllDocuments(fs.readFileSync(join(CONF, '20-daemonset.yaml'), 'utf8'))[0]!.toJS();
    const pod = ds.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.tolerations).toContainEqual({ operator: 'Exists' });
    const paths = pod.volumes.filter((v: { hostPath?: unknown }) => v.hostPath).map((v: { hostPath: { path: string } }) => v.hostPath.path);
    expect(paths.sort()).toEqual(['/etc/cni/net.d', '/opt/cni/bin', '/run/netns', '/var/lib/cni']);
    const c = pod.containers[0];
    expect(c.securityContext.privileged).toBeUndefined();
    expect(c.securityContext.capabilities.drop).toEqual(['ALL']);
    expect(c.command).toContain('--watch');
    expect(c.readinessProbe.exec.command).toContain('--check');
  });

  it('the ClusterRole grants exactly pods get, pods/status update, NADs get/list', () => {
    const docs = parseAllDocuments(fs.readFileSync(join(CONF, '10-rbac.yaml'), 'utf8')).map((d) => d.toJS());
    const role = docs.find((d) => d.kind === 'ClusterRole');
    const grants = role.rules.flatMap((r: { resources: string[]; verbs: string[] }) => r.resources.flatMap((res) => r.verbs.map((v) => `${res}:${v}`)));
    expect(grants.sort()).toEqual(['network-attachment-definitions:get', 'network-attachment-definitions:list', 'pods/status:update', 'pods:get']);
  });
});

describe('multinic validate', () => {
  it('accepts a good conf, conflist and NAD', async () => {
    const conf = { cniVersion: '1.0.0', name: 'n', type: 'macvlan', master: 'eth1', ipam: { type: 'static', addresses: [{ address: '192.0.2.10/24' }] } };
    expect(errorsOf(await validateText(JSON.stringify(conf), 'a.conf'))).toEqual([]);
    const { name: _n, cniVersion: _v, ...plugin } = conf;
    expect(errorsOf(await validateText(JSON.stringify({ cniVersion: '1.0.0', name: 'n', plugins: [plugin] }), 'a.conflist'))).toEqual([]);
    expect(errorsOf(await validateText(nad(plugin), 'a.yaml'))).toEqual([]);
  });

  it('reports a bad value in a NAD with the document, the key and the value', async () => {
    const f = await validateText(nad({ cniVersion: '1.0.0', type: 'macvlan', master: 'eth1', mode: 'bridgey' }, 'storage'), 'bad.yaml');
    expect(errorsOf(f)).toHaveLength(1);
    expect(f[0]!.where).toBe('bad.yaml (NetworkAttachmentDefinition storage).spec.config');
    expect(f[0]!.message).toBe('invalid mode "bridgey": must be one of bridge, private, vepa, passthru');
  });

  it('checks the IPAM config with the IPAM plugin, as ADD would', async () => {
    const f = await validateText(nad({ cniVersion: '1.0.0', type: 'macvlan', ipam: { type: 'static', addresses: [{ address: '192.0.2.10' }] } }), 'x.yaml');
    expect(errorsOf(f).map((e) => e.message)).toEqual(['invalid ipam.addresses[0].address "192.0.2.10": must be a CIDR with a prefix length']);
  });

  it('reports spec.config that is not JSON (the seed guide writes a # comment in it)', async () => {
    const f = await validateText(nad('{"type": "ipvlan", # comment\n "master": "ens224"}'), 'x.yaml');
    expect(errorsOf(f)).toHaveLength(1);
    expect(f[0]!.where).toMatch(/\.spec\.config$/);
    expect(f[0]!.message).toMatch(/not JSON/);
  });

  it('reports a NAD name that cannot be used in a pod annotation, and a wrong apiVersion', async () => {
    const text = nad({ type: 'macvlan' }, 'Storage_Net').replace('k8s.cni.cncf.io/v1', 'k8s.cni.cncf.io/v2');
    const keys = errorsOf(await validateText(text, 'x.yaml')).map((e) => e.where.split(')').pop());
    expect(keys.sort()).toEqual(['.apiVersion', '.metadata.name']);
  });

  it('names the plugin index in a conflist and the delegate in a meta-plugin conf', async () => {
    const list = { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'macvlan' }, { type: 'macvlan', mtu: 10 }] };
    const f1 = errorsOf(await validateText(JSON.stringify(list), 'l.conflist'));
    expect(f1).toEqual([{ level: 'error', where: 'l.conflist.plugins[1]', message: 'invalid mtu 10: must be 0 (the kernel default) or at least 68' }]);
    const meta = { cniVersion: '1.0.0', name: 'm', type: 'multinic', delegates: [{ name: 'p', type: 'bridge' }, list] };
    const f2 = errorsOf(await validateText(JSON.stringify(meta), 'm.conf'));
    expect(f2.map((e) => e.where)).toEqual(['m.conf.delegates[1].plugins[1]']);
  });

  it('rejects unsupported versions, missing names, malformed JSON files', async () => {
    expect(errorsOf(await validateText('{"cniVersion":"0.2.0","name":"a","type":"macvlan"}', 'a.conf'))[0]).toMatchObject({ where: 'a.conf.cniVersion' });
    expect(errorsOf(await validateText('{"cniVersion":"1.0.0","type":"macvlan"}', 'a.conf'))[0]).toMatchObject({ where: 'a.conf.name' });
    expect(errorsOf(await validateText('{"cniVersion":', 'a.conflist'))[0]!.message).toMatch(/not JSON/);
    expect(errorsOf(await validateText('{"cniVersion":"1.0.0","name":"n","plugins":[{"master":"x"}]}', 'a.conflist'))[0]!.message).toMatch(/plugins\[0\]\.type/);
  });

  it('checks required fields of other kinds', async () => {
    const ds = 'apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: x\nspec:\n  selector:\n    matchLabels: {a: b}\n  template:\n    metadata:\n      labels: {a: c}\n    spec:\n      containers:\n      - name: c\n        volumeMounts: [{name: v, mountPath: /v}]\n';
    const where = errorsOf(await validateText(ds, 'ds.yaml')).map((e) => e.where.replace('ds.yaml (DaemonSet x)', ''));
    expect(where.sort()).toEqual(['.spec.template.metadata.labels', '.spec.template.spec.containers[0].image', '.spec.template.spec.containers[0].volumeMounts[0].name']);
  });
});
