/**
 * The Kubernetes client against the fake API server (HTTPS on 127.0.0.1, certificates made by
 * openssl): kubeconfig forms, authentication, conflicts, failures, stalls.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { asCniError } from '../../../src/cni/errors.js';
import { KubeClient, KubeError } from '../../../src/delegate/k8s/client.js';
import { inClusterConfig, loadClientConfig, parseYamlSubset } from '../../../src/delegate/k8s/kubeconfig.js';
import { FakeApiServer, makeCerts } from '../../helpers/fake-apiserver.js';
import { processTmpRoot } from '../../helpers/paths.js';

describe('kubeconfig YAML', () => {
  it('reads what kubectl writes', () => {
    const text = [
      'apiVersion: v1',
      'clusters:',
      '- cluster:',
      '    certificate-authority-data: QUJD # a comment',
      '    server: "https://10.0.0.1:6443"',
      '  name: local',
      'contexts:',
      '- context:',
      '    cluster: local',
      "    user: 'multus'",
      '  name: ctx',
      'current-context: ctx',
      'kind: Config',
      'preferences: {}',
      'users:',
      '- name: multus',
      '  user:',
      '    token: abc#notacomment',
      '',
    ].join('\n');
    expect(parseYamlSubset(text)).toEqual({
      apiVersion: 'v1',
      clusters: [{ cluster: { 'certificate-authority-data': 'QUJD', server: 'https://10.0.0.1:6443' }, name: 'local' }],
      contexts: [{ context: { cluster: 'local', user: 'multus' }, name: 'ctx' }],
      'current-context': 'ctx',
      kind: 'Config',
      preferences: {},
      users: [{ name: 'multus', user: { token: 'abc#notacomment' } }],
    });
  });

  it('indented sequences and nested lists', () => {
    expect(parseYamlSubset('a:\n  - x\n  - y: 1\n    z: true\nb: ~\n')).toEqual({ a: ['x', { y: 1, z: true }], b: null });
  });

  it('bad indentation is code 7 naming the line', () => {
    expect(() => parseYamlSubset('a: 1\n   b: 2\n', 'k.yaml')).toThrow(/k\.yaml:2/);
  });

  it('the current context picks cluster and user; relative paths are from the kubeconfig', () => {
    const dir = mkdtempSync(join(processTmpRoot(), 'kc-'));
    writeFileSync(join(dir, 'ca.crt'), 'CA');
    writeFileSync(join(dir, 'token'), 'tok\n');
    writeFileSync(join(dir, 'kc'), [
      'clusters:',
      '- name: a',
      '  cluster: {server: https://a}',
      '- name: b',
      '  cluster:',
      '    server: https://b:6443/',
      '    certificate-authority: ca.crt',
      'users:',
      '- name: u',
      '  user:',
      '    tokenFile: token',
      'contexts:',
      '- name: c',
      '  context:',
      '    cluster: b',
      '    user: u',
      'current-context: c',
    ].join('\n').replace('{server: https://a}', '\n    server: https://a'));
    const cfg = loadClientConfig(join(dir, 'kc'));
    expect(cfg.server).toBe('https://b:6443');
    expect(cfg.ca?.toString()).toBe('CA');
    expect(cfg.tokenFile).toBe(join(dir, 'token'));
  });

  it('a missing kubeconfig is code 7 naming it', () => {
    const e = asCniError((() => { try { loadClientConfig('/nonexistent/kc'); } catch (err) { return err; } })());
    expect(e.code).toBe(7);
    expect(e.message).toContain('/nonexistent/kc');
  });

  it('in-cluster: the service account directory and KUBERNETES_SERVICE_*', () => {
    const dir = mkdtempSync(join(processTmpRoot(), 'sa-'));
    writeFileSync(join(dir, 'ca.crt'), 'CA');
    expect(inClusterConfig({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, dir)).toMatchObject({
      server: 'https://[fd00::1]:443',
      tokenFile: join(dir, 'token'),
    });
    expect(() => inClusterConfig({}, dir)).toThrow(/KUBERNETES_SERVICE_HOST/);
  });
});

describe('client against the fake API server', () => {
  const api = new FakeApiServer(['good-token']);
  let dir: string;
  const clients: KubeClient[] = [];
  const client = (auth: Parameters<FakeApiServer['writeKubeconfig']>[1], timeoutMs?: number) => {
    const c = new KubeClient(loadClientConfig(api.writeKubeconfig(mkdtempSync(join(dir, 'kc-')), auth)), timeoutMs);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    makeCerts();
    await api.start();
    dir = mkdtempSync(join(processTmpRoot(), 'k8s-'));
  });
  afterEach(() => {
    api.clearFaults();
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(() => api.stop());

  it('GET pod and NAD with a bearer token, Accept application/json', async () => {
    api.addPod('default', 'p1', { a: 'b' });
    api.addNad('default', 'gke-network-1', { cniVersion: '1.0.0', type: 'macvlan' });
    const c = client({ token: 'good-token' });
    expect((await c.getPod('default', 'p1')).metadata.annotations).toEqual({ a: 'b' });
    const nad = await c.getNetworkAttachmentDefinition('default', 'gke-network-1');
    expect(JSON.parse(nad.spec!.config!)).toMatchObject({ type: 'macvlan' });
    const last = api.requests.at(-1)!;
    expect(last).toMatchObject({
      method: 'GET',
      path: '/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/gke-network-1',
      accept: 'application/json',
      authorization: 'Bearer good-token',
    });
  });

  it('a bad token is 401, and code 11 for the runtime', async () => {
    const err = await client({ token: 'bad' }).getPod('default', 'p1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeError);
    expect((err as KubeError).status).toBe(401);
    expect(asCniError(err).code).toBe(11);
  });

  it('the token file is read on every call: a rotated token keeps working', async () => {
    api.addPod('default', 'p2');
    const tokenFile = join(dir, 'rotating-token');
    writeFileSync(tokenFile, 'token-1\n');
    api.tokens.add('token-1');
    const c = client({ tokenFile });
    await c.getPod('default', 'p2');
    api.tokens.delete('token-1');
    api.tokens.add('token-2');
    writeFileSync(tokenFile, 'token-2\n');
    await c.getPod('default', 'p2');
    expect(api.requests.slice(-2).map((r) => r.authorization)).toEqual(['Bearer token-1', 'Bearer token-2']);
  });

  it('a client certificate signed by the CA authenticates', async () => {
    api.addPod('default', 'p3');
    await client({ clientCert: true }).getPod('default', 'p3');
    expect(api.requests.at(-1)!.clientCert).toBe(true);
  });

  it('404 names the object', async () => {
    const err = (await client({ token: 'good-token' }).getNetworkAttachmentDefinition('default', 'nope').catch((e: unknown) => e)) as KubeError;
    expect(err.status).toBe(404);
    expect(err.message).toContain('network-attachment-definition default/nope');
  });

  it('the annotation goes through pods/status as a merge patch with resourceVersion and uid', async () => {
    const pod = api.addPod('default', 'p4', { keep: 'me' });
    const c = client({ token: 'good-token' });
    const updated = await c.setPodAnnotation(await c.getPod('default', 'p4'), 'k8s.v1.cni.cncf.io/network-status', '[]');
    expect(updated.metadata.annotations).toEqual({ keep: 'me', 'k8s.v1.cni.cncf.io/network-status': '[]' });
    const patch = api.requests.at(-1)!;
    expect(patch).toMatchObject({ method: 'PATCH', path: '/api/v1/namespaces/default/pods/p4/status', contentType: 'application/merge-patch+json', status: 200 });
    expect(api.getPod('default', 'p4')!.metadata.resourceVersion).not.toBe(pod.metadata.resourceVersion);
  });

  it('a stale resourceVersion is 409 and the write is retried on a fresh read', async () => {
    api.addPod('default', 'p5');
    const c = client({ token: 'good-token' });
    const stale = await c.getPod('default', 'p5');
    api.touchPod('default', 'p5', { other: 'writer' });
    const updated = await c.setPodAnnotation(stale, 'x', 'y');
    expect(updated.metadata.annotations).toEqual({ other: 'writer', x: 'y' });
    expect(api.requests.slice(-3).map((r) => `${r.method} ${r.status}`)).toEqual(['PATCH 409', 'GET 200', 'PATCH 200']);
  });

  it('a pod replaced under the same name is not written', async () => {
    api.addPod('default', 'p6');
    const c = client({ token: 'good-token' });
    const old = await c.getPod('default', 'p6');
    api.addPod('default', 'p6');
    await expect(c.setPodAnnotation(old, 'x', 'y')).rejects.toThrow(/replaced/);
  });

  it('a stalled server fails within the deadline', async () => {
    api.addPod('default', 'p7');
    api.stall({ times: 1 });
    const started = Date.now();
    const err = (await client({ token: 'good-token' }, 300).getPod('default', 'p7').catch((e: unknown) => e)) as KubeError;
    expect(err.reason).toBe('Timeout');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(asCniError(err).code).toBe(11);
  });

  it('injected 500s fail; the server answers metav1.Status', async () => {
    api.addPod('default', 'p8');
    api.fail(500, { method: 'GET', times: 1 });
    const err = (await client({ token: 'good-token' }).getPod('default', 'p8').catch((e: unknown) => e)) as KubeError;
    expect(err.status).toBe(500);
    expect(api.requests.at(-1)!.body).toMatchObject({ kind: 'Status', code: 500 });
  });

  it('the fake server checks verbs and content types as the API does', async () => {
    api.addPod('default', 'p9');
    const c = client({ token: 'good-token' });
    expect((await c.request('DELETE', '/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/x')).status).toBe(405);
    expect((await c.request('PATCH', '/api/v1/namespaces/default/pods/p9/status', {}, 'text/plain')).status).toBe(415);
    const pod = await c.getPod('default', 'p9');
    const put = await c.request('PUT', '/api/v1/namespaces/default/pods/p9/status', { ...pod, metadata: { ...pod.metadata, annotations: { a: '1' } } });
    expect(put.status).toBe(200);
    const stalePut = await c.request('PUT', '/api/v1/namespaces/default/pods/p9/status', { ...pod, metadata: { ...pod.metadata, annotations: { a: '2' } } });
    expect(stalePut).toMatchObject({ status: 409, body: { reason: 'Conflict' } });
    const jsonPatch = await c.request('PATCH', '/api/v1/namespaces/default/pods/p9/status', [{ op: 'add', path: '/metadata/annotations/k8s.v1.cni.cncf.io~1network-status', value: '[]' }], 'application/json-patch+json');
    expect(jsonPatch.status).toBe(200);
    expect(api.getPod('default', 'p9')!.metadata.annotations).toEqual({ a: '1', 'k8s.v1.cni.cncf.io/network-status': '[]' });
  });

  it('a server that is down is a connection error, code 11', async () => {
    const down = new FakeApiServer();
    await down.start();
    const kc = down.writeKubeconfig(mkdtempSync(join(dir, 'kc-')));
    await down.stop();
    const err = await new KubeClient(loadClientConfig(kc), 1000).getPod('default', 'x').catch((e: unknown) => e);
    expect((err as KubeError).reason).toBe('ConnectionError');
    expect(asCniError(err).code).toBe(11);
  });
});
