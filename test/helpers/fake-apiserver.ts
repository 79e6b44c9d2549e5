/**
 * A local Kubernetes API server for the endpoints multinic uses, as the API documents them:
 *
 *   GET   /api/v1/namespaces/{ns}/pods/{name}
 *   GET   /api/v1/namespaces/{ns}/pods/{name}/status
 *   PUT   /api/v1/namespaces/{ns}/pods/{name}/status         application/json
 *   PATCH /api/v1/namespaces/{ns}/pods/{name}/status         application/merge-patch+json,
 *                                                             application/strategic-merge-patch+json,
 *                                                             application/json-patch+json
 *   GET   /apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}
 *   GET, POST           /apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/{ns}/{ippools|overlappingrangeipreservations}
 *   GET, PUT, DELETE    /apis/whereabouts.cni.cncf.io/v1alpha1/namespaces/{ns}/{ippools|overlappingrangeipreservations}/{name}
 *                       (create: 409 AlreadyExists; update and delete precondition: 409 on a stale
 *                       resourceVersion; 404 NotFound)
 *
 * HTTPS with a CA, server and client certificate made by `openssl` at test time; bearer tokens
 * or a client certificate signed by the CA; errors as metav1.Status objects: 401 Unauthorized,
 * 404 NotFound, 405 MethodNotAllowed, 409 Conflict on a stale resourceVersion or another uid,
 * 415 UnsupportedMediaType. Writes through pods/status change annotations and status only.
 * It can fail or stall requests on demand, and listen inside a network namespace (the node's,
 * where the plugins run) while the test drives it in-process.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { processTmpRoot } from './paths.js';

export interface Certs {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

let certs: Certs | undefined;

/** A CA, a server certificate for 127.0.0.1/::1/localhost and a client certificate, once per process. */
export function makeCerts(): Certs {
  if (certs && safeRead(certs.caCert)) return certs;
  const dir = join(processTmpRoot(), 'fake-apiserver-pki');
  mkdirSync(dir, { recursive: true });
  const p = (f: string) => join(dir, f);
  const ossl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl('req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.crt'), '-days', '2', '-subj', '/CN=fake-apiserver-ca');
  writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  writeFileSync(p('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, cn] of [['server', '127.0.0.1'], ['client', 'system:node:test']] as const) {
    ossl('req', ...ec, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`), '-subj', `/CN=${cn}`);
    ossl('x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.crt'), '-CAkey', p('ca.key'), '-CAcreateserial',
      '-out', p(`${name}.crt`), '-days', '2', '-extfile', p(`${name}.ext`));
  }
  certs = { dir, caCert: p('ca.crt'), serverCert: p('server.crt'), serverKey: p('server.key'), clientCert: p('client.crt'), clientKey: p('client.key') };
  return certs;
}

function safeRead(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

export interface RequestRecord {
  method: string;
  path: string;
  contentType: string | undefined;
  accept: string | undefined;
  authorization: string | undefined;
  clientCert: boolean;
  status: number;
  body: unknown;
}

interface Rule {
  method?: string;
  path?: RegExp;
  /** how many matching requests; Infinity for all */
  times: number;
}

type KubeObj = Record<string, any>;

export type WhereaboutsPlural = 'ippools' | 'overlappingrangeipreservations';

function status(code: number, reason: string, message: string): KubeObj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: KubeObj = typeof target === 'object' && target !== null && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function unescapePointer(s: string): string {
  return s.replace(/~1/g, '/').replace(/~0/g, '~');
}

export class FakeApiServer {
  readonly tokens = new Set<string>();
  readonly requests: RequestRecord[] = [];
  private pods = new Map<string, KubeObj>();
  private nads = new Map<string, KubeObj>();
  /** whereabouts resources by "<plural>/<ns>/<name>" */
  private wb = new Map<string, KubeObj>();
  /** answered 409 on a write of whereabouts resources because of a stale resourceVersion or an existing name */
  conflicts = 0;
  private rv = 1000;
  private failures: Array<Rule & { status: number }> = [];
  private stalls: Rule[] = [];
  private stalled = new Set<ServerResponse>();
  private server: Server | undefined;
  port = 0;

  constructor(tokens: string[] = ['good-token']) {
    for (const t of tokens) this.tokens.add(t);
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** Listens on a free port, in the network namespace at `netns` if given (e.g. the node's). */
  async start(opts: { netns?: string } = {}): Promise<this> {
    const c = makeCerts();
    const server = createServer({
      cert: readFileSync(c.serverCert),
      key: readFileSync(c.serverKey),
      ca: readFileSync(c.caCert),
      requestCert: true,
      rejectUnauthorized: false,
    }, (req, res) => this.handle(req, res));
    this.server = server;
    const listening = new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    if (opts.netns) {
      // The listening socket is made synchronously by listen() without a host, so it is
      // created in the namespace the main thread is in at that moment.
      const { inNetnsPath } = await import('../../src/netlink/netns.js');
      inNetnsPath(opts.netns, () => server.listen(0));
    } else {
      server.listen(0, '127.0.0.1');
    }
    await listening;
    this.port = (server.address() as { port: number }).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const res of this.stalled) res.destroy();
    this.stalled.clear();
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Writes a kubeconfig for this server: a token inline, a token file, or the client certificate; `namespace` in its context. */
  writeKubeconfig(dir: string, auth: { token?: string; tokenFile?: string; clientCert?: boolean; namespace?: string } = { token: 'good-token' }): string {
    const c = makeCerts();
    mkdirSync(dir, { recursive: true });
    const user: string[] = [];
    if (auth.token) user.push(`    token: ${auth.token}`);
    if (auth.tokenFile) user.push(`    tokenFile: ${auth.tokenFile}`);
    if (auth.clientCert) user.push(`    client-certificate: ${c.clientCert}`, `    client-key: ${c.clientKey}`);
    const text = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- cluster:',
      `    certificate-authority-data: ${readFileSync(c.caCert).toString('base64')}`,
      `    server: ${this.url}`,
      '  name: fake',
      'contexts:',
      '- context:',
      '    cluster: fake',
      '    user: multinic',
      ...(auth.namespace ? [`    namespace: ${auth.namespace}`] : []),
      '  name: fake',
      'current-context: fake',
      'users:',
      '- name: multinic',
      '  user:',
      ...(user.length ? user : ['    {}']),
      '',
    ].join('\n');
    const path = join(dir, 'multinic.kubeconfig');
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  }

  addPod(namespace: string, name: string, annotations: Record<string, string> = {}): KubeObj {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace, uid: randomUUID(), resourceVersion: String(++this.rv), annotations: { ...annotations } },
      spec: { containers: [{ name: 'app', image: 'busybox' }] },
      status: { phase: 'Pending' },
    };
    this.pods.set(`${namespace}/${name}`, pod);
    return pod;
  }

  getPod(namespace: string, name: string): KubeObj | undefined {
    return this.pods.get(`${namespace}/${name}`);
  }

  deletePod(namespace: string, name: string): void {
    this.pods.delete(`${namespace}/${name}`);
  }

  /** Another writer changed the pod: its resourceVersion moves on. */
  touchPod(namespace: string, name: string, annotations: Record<string, string> = {}): void {
    const pod = this.pods.get(`${namespace}/${name}`);
    if (!pod) throw new Error(`no pod ${namespace}/${name}`);
    Object.assign(pod.metadata.annotations, annotations);
    pod.metadata.resourceVersion = String(++this.rv);
  }

  addNad(namespace: string, name: string, config: object | string): KubeObj {
    const nad = {
      apiVersion: 'k8s.cni.cncf.io/v1',
      kind: 'NetworkAttachmentDefinition',
      metadata: { name, namespace, uid: randomUUID(), resourceVersion: String(++this.rv) },
      spec: { config: typeof config === 'string' ? config : JSON.stringify(config) },
    };
    this.nads.set(`${namespace}/${name}`, nad);
    return nad;
  }

  /** A whereabouts resource ('ippools' or 'overlappingrangeipreservations'), as stored. */
  getWhereabouts(plural: WhereaboutsPlural, namespace: string, name: string): KubeObj | undefined {
    return this.wb.get(`${plural}/${namespace}/${name}`);
  }

  listWhereabouts(plural: WhereaboutsPlural, namespace?: string): KubeObj[] {
    return [...this.wb.entries()]
      .filter(([k]) => k.startsWith(`${plural}/${namespace === undefined ? '' : `${namespace}/`}`))
      .map(([, v]) => v);
  }

  /** Stores a whereabouts resource as another writer would (a new resourceVersion). */
  putWhereabouts(plural: WhereaboutsPlural, namespace: string, obj: KubeObj): KubeObj {
    const stored = { ...obj, metadata: { ...obj.metadata, namespace, uid: obj.metadata?.uid ?? randomUUID(), resourceVersion: String(++this.rv) } };
    this.wb.set(`${plural}/${namespace}/${obj.metadata.name}`, stored);
    return stored;
  }

  /** The next `times` matching requests get `status` (a metav1.Status body). */
  fail(statusCode: number, rule: { method?: string; path?: RegExp; times?: number } = {}): void {
    this.failures.push({ ...rule, status: statusCode, times: rule.times ?? Infinity });
  }

  /** The next `times` matching requests are never answered. */
  stall(rule: { method?: string; path?: RegExp; times?: number } = {}): void {
    this.stalls.push({ ...rule, times: rule.times ?? Infinity });
  }

  clearFaults(): void {
    this.failures = [];
    this.stalls = [];
  }

  private take<T extends Rule>(rules: T[], method: string, path: string): T | undefined {
    const r = rules.find((x) => x.times > 0 && (!x.method || x.method === method) && (!x.path || x.path.test(path)));
    if (r) r.times--;
    return r;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const method = req.method ?? '';
      const url = new URL(req.url ?? '/', 'https://x');
      const record: RequestRecord = {
        method,
        path: url.pathname,
        contentType: req.headers['content-type'],
        accept: req.headers.accept,
        authorization: req.headers.authorization,
        clientCert: (req.socket as TLSSocket).authorized === true,
        status: 0,
        body: undefined,
      };
      this.requests.push(record);
      const text = Buffer.concat(chunks).toString('utf8');
      if (this.take(this.stalls, method, url.pathname)) {
        this.stalled.add(res);
        return;
      }
      const [code, body] = this.route(method, url.pathname, record, text);
      record.status = code;
      record.body = body;
      const payload = JSON.stringify(body);
      res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) });
      res.end(payload);
    });
  }

  private authenticated(rec: RequestRecord): boolean {
    if (rec.clientCert) return true;
    const m = /^Bearer (.+)$/.exec(rec.authorization ?? '');
    return m !== null && this.tokens.has(m[1]!);
  }

  private route(method: string, path: string, rec: RequestRecord, text: string): [number, KubeObj] {
    if (!this.authenticated(rec)) return [401, status(401, 'Unauthorized', 'Unauthorized')];
    const injected = this.take(this.failures, method, path);
    if (injected) {
      const reasons: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 409: 'Conflict', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable' };
      return [injected.status, status(injected.status, reasons[injected.status] ?? 'Unknown', `injected failure ${injected.status}`)];
    }
    let m = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)(\/status)?$/.exec(path);
    if (m) {
      const [, ns, name, sub] = m as unknown as [string, string, string, string | undefined];
      const pod = this.pods.get(`${ns}/${name}`);
      const notFound = (): [number, KubeObj] => [404, status(404, 'NotFound', `pods "${name}" not found`)];
      if (method === 'GET') return pod ? [200, pod] : notFound();
      if (!sub) return [405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`)];
      if (method !== 'PUT' && method !== 'PATCH') return [405, status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`)];
      if (!pod) return notFound();
      return this.writeStatus(method, pod, rec.contentType ?? '', text);
    }
    m = /^\/apis\/k8s\.cni\.cncf\.io\/v1\/namespaces\/([^/]+)\/network-attachment-definitions\/([^/]+)$/.exec(path);
    if (m) {
      if (method !== 'GET') return [405, status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')];
      const nad = this.nads.get(`${m[1]}/${m[2]}`);
      return nad ? [200, nad] : [404, status(404, 'NotFound', `network-attachment-definitions.k8s.cni.cncf.io "${m[2]}" not found`)];
    }
    m = /^\/apis\/whereabouts\.cni\.cncf\.io\/v1alpha1\/namespaces\/([^/]+)\/(ippools|overlappingrangeipreservations)(?:\/([^/]+))?$/.exec(path);
    if (m) return this.whereabouts(method, m[1]!, m[2] as WhereaboutsPlural, m[3], text);
    return [404, status(404, 'NotFound', 'the server could not find the requested resource')];
  }

  private whereabouts(method: string, ns: string, plural: WhereaboutsPlural, name: string | undefined, text: string): [number, KubeObj] {
    const kind = plural === 'ippools' ? 'IPPool' : 'OverlappingRangeIPReservation';
    const notFound = (n: string): [number, KubeObj] => [404, status(404, 'NotFound', `${plural}.whereabouts.cni.cncf.io "${n}" not found`)];
    const conflict = (n: string): [number, KubeObj] => {
      this.conflicts++;
      return [409, status(409, 'Conflict', `Operation cannot be fulfilled on ${plural}.whereabouts.cni.cncf.io "${n}": the object has been modified; please apply your changes to the latest version and try again`)];
    };
    let body: any;
    if (method === 'POST' || method === 'PUT' || (method === 'DELETE' && text)) {
      try {
        body = JSON.parse(text);
      } catch {
        return [400, status(400, 'BadRequest', 'the request body is not JSON')];
      }
    }
    if (name === undefined) {
      if (method === 'GET') {
        const items = this.listWhereabouts(plural, ns).map(({ apiVersion: _a, kind: _k, ...rest }) => rest);
        return [200, { apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind: `${kind}List`, metadata: { resourceVersion: String(this.rv) }, items }];
      }
      if (method !== 'POST') return [405, status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')];
      const n = body?.metadata?.name;
      if (typeof n !== 'string' || !n) return [422, status(422, 'Invalid', 'metadata.name: Required value')];
      if (body.metadata.resourceVersion) return [400, status(400, 'BadRequest', 'resourceVersion should not be set on objects to be created')];
      if (this.wb.has(`${plural}/${ns}/${n}`)) {
        this.conflicts++;
        return [409, { ...status(409, 'AlreadyExists', `${plural}.whereabouts.cni.cncf.io "${n}" already exists`), details: { name: n, kind: plural } }];
      }
      return [201, this.putWhereabouts(plural, ns, { ...body, apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind, metadata: { ...body.metadata, uid: undefined } })];
    }
    const cur = this.wb.get(`${plural}/${ns}/${name}`);
    if (method === 'GET') return cur ? [200, cur] : notFound(name);
    if (method === 'PUT') {
      if (!cur) return notFound(name);
      if (body?.metadata?.name !== name) return [400, status(400, 'BadRequest', 'the name of the object does not match the name on the URL')];
      if (!body.metadata.resourceVersion) return [422, status(422, 'Invalid', 'metadata.resourceVersion: Invalid value: 0x0: must be specified for an update')];
      if (body.metadata.resourceVersion !== cur.metadata.resourceVersion) return conflict(name);
      return [200, this.putWhereabouts(plural, ns, { ...body, apiVersion: 'whereabouts.cni.cncf.io/v1alpha1', kind, metadata: { ...body.metadata, uid: cur.metadata.uid } })];
    }
    if (method === 'DELETE') {
      if (!cur) return notFound(name);
      const pre = body?.preconditions ?? {};
      if ((pre.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion) || (pre.uid && pre.uid !== cur.metadata.uid)) return conflict(name);
      this.wb.delete(`${plural}/${ns}/${name}`);
      return [200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details: { name, kind: plural } }];
    }
    return [405, status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')];
  }

  private writeStatus(method: string, pod: KubeObj, contentType: string, text: string): [number, KubeObj] {
    const ct = contentType.split(';')[0]!.trim();
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      return [400, status(400, 'BadRequest', 'the request body is not JSON')];
    }
    const meta = pod.metadata;
    const conflict = (): [number, KubeObj] => [409, status(409, 'Conflict',
      `Operation cannot be fulfilled on pods "${meta.name}": the object has been modified; please apply your changes to the latest version and try again`)];
    let next: KubeObj;
    if (method === 'PUT') {
      if (ct !== 'application/json') return [415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json`)];
      if (body?.metadata?.name !== meta.name) return [400, status(400, 'BadRequest', 'the name of the object does not match the name on the URL')];
      if (body.metadata.resourceVersion && body.metadata.resourceVersion !== meta.resourceVersion) return conflict();
      if (body.metadata.uid && body.metadata.uid !== meta.uid) return conflict();
      next = { ...pod, metadata: { ...meta, annotations: body.metadata.annotations ?? {} }, status: body.status ?? pod.status };
    } else if (ct === 'application/merge-patch+json' || ct === 'application/strategic-merge-patch+json') {
      const pm = body?.metadata ?? {};
      if (pm.resourceVersion && pm.resourceVersion !== meta.resourceVersion) return conflict();
      if (pm.uid && pm.uid !== meta.uid) return conflict();
      const merged = mergePatch(pod, body) as KubeObj;
      // pods/status changes metadata annotations and status; spec and identity stay.
      next = { ...pod, metadata: { ...meta, annotations: merged.metadata?.annotations ?? {} }, status: merged.status ?? pod.status };
    } else if (ct === 'application/json-patch+json') {
      if (!Array.isArray(body)) return [400, status(400, 'BadRequest', 'a JSON patch is a list of operations')];
      const annotations = { ...(meta.annotations ?? {}) };
      for (const op of body) {
        if (op.op === 'test' && op.path === '/metadata/resourceVersion') {
          if (op.value !== meta.resourceVersion) return [422, status(422, 'Invalid', 'the test operation failed')];
          continue;
        }
        const am = /^\/metadata\/annotations\/(.+)$/.exec(op.path ?? '');
        if (!am) return [422, status(422, 'Invalid', `unsupported path ${op.path}`)];
        const key = unescapePointer(am[1]!);
        if (op.op === 'add' || op.op === 'replace') annotations[key] = op.value;
        else if (op.op === 'remove') delete annotations[key];
        else return [422, status(422, 'Invalid', `unsupported op ${op.op}`)];
      }
      next = { ...pod, metadata: { ...meta, annotations } };
    } else {
      return [415, status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`)];
    }
    next.metadata.resourceVersion = String(++this.rv);
    this.pods.set(`${meta.namespace}/${meta.name}`, next);
    return [200, next];
  }
}
