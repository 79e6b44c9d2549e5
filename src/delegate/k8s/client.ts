/**
 * The few Kubernetes API calls the meta-plugin makes, over node:https: GET a pod, GET a
 * NetworkAttachmentDefinition, and write the network-status annotation through the pods/status
 * subresource with retry on conflict. Every request has a short deadline (connect, TLS and
 * response together), and the token is read from its file on every request.
 */
import { readFileSync } from 'node:fs';
import type { Agent, RequestOptions } from 'node:https';
import { CniError, ErrorCode } from '../../cni/errors.js';
import { isRecord } from '../../cni/types.js';
import type { ClientConfig } from './kubeconfig.js';

export const DEFAULT_TIMEOUT_MS = 5000;
const CONFLICT_RETRIES = 5;

/** An API call that failed: the HTTP status (0 when there was no answer) and what was asked. */
export class KubeError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    msg: string,
  ) {
    super(msg);
    this.name = 'KubeError';
  }

  /** The API being unreachable or refusing is transient for the pod: kubelet should try again. */
  toCniError(): CniError {
    return new CniError(ErrorCode.TryAgainLater, this.message);
  }
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    annotations?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

export interface NetworkAttachmentDefinition extends KubeObject {
  spec?: { config?: string };
}

export interface Response {
  status: number;
  body: unknown;
}

type HttpsModule = typeof import('node:https');

export class KubeClient {
  private agent: Agent | undefined;
  private https: HttpsModule | undefined;

  constructor(
    readonly config: ClientConfig,
    readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  /** Closes kept-alive connections (a CNI process exits anyway; tests do not). */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }

  private token(): string | undefined {
    if (this.config.tokenFile) {
      try {
        return readFileSync(this.config.tokenFile, 'utf8').trim();
      } catch (err) {
        throw new KubeError(0, 'TokenUnreadable', `cannot read token file ${this.config.tokenFile}: ${(err as Error).message}`);
      }
    }
    return this.config.token;
  }

  async request(method: string, path: string, body?: unknown, contentType = 'application/json', timeoutMs = this.timeoutMs): Promise<Response> {
    // Loaded on first use: no TLS code is evaluated by a pod without a kubeconfig. Not import():
    // in the single executable (a CommonJS startup snapshot) there is no ESM loader for it.
    this.https ??= process.getBuiltinModule('node:https');
    const https = this.https;
    this.agent ??= new https.Agent({
      keepAlive: true,
      ca: this.config.ca,
      cert: this.config.cert,
      key: this.config.key,
      rejectUnauthorized: !this.config.insecureSkipTLSVerify,
    });
    const url = new URL(this.config.server + path);
    const headers: Record<string, string> = { Accept: 'application/json', 'User-Agent': 'multinic' };
    const token = this.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload: Buffer | undefined;
    if (body !== undefined) {
      payload = Buffer.from(JSON.stringify(body));
      headers['Content-Type'] = contentType;
      headers['Content-Length'] = String(payload.length);
    }
    const what = `${method} ${url.pathname}`;
    const opts: RequestOptions = {
      method,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || 443,
      path: url.pathname + url.search,
      headers,
      agent: this.agent,
    };
    return new Promise<Response>((resolve, reject) => {
      const req = https.request(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text === '' ? undefined : JSON.parse(text);
          } catch {
            // not JSON: keep the text for the error message
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', (err) => {
          clearTimeout(timer);
          reject(new KubeError(0, 'ConnectionError', `${what}: ${err.message}`));
        });
      });
      const timer = setTimeout(() => {
        req.destroy(new KubeError(0, 'Timeout', `${what}: no answer from ${this.config.server} within ${timeoutMs} ms`));
      }, timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err instanceof KubeError ? err : new KubeError(0, 'ConnectionError', `${what} on ${this.config.server}: ${err.message}`));
      });
      req.end(payload);
    });
  }

  private failure(what: string, res: Response): KubeError {
    const b = res.body;
    const reason = isRecord(b) && typeof b.reason === 'string' ? b.reason : `HTTP ${res.status}`;
    const message = isRecord(b) && typeof b.message === 'string' ? b.message : typeof b === 'string' ? b.slice(0, 200) : '';
    return new KubeError(res.status, reason, `${what}: ${res.status} ${reason}${message ? `: ${message}` : ''}`);
  }

  private async getObject<T extends KubeObject>(path: string, what: string): Promise<T> {
    const res = await this.request('GET', path);
    if (res.status !== 200 || !isRecord(res.body) || !isRecord(res.body.metadata)) throw this.failure(`GET ${what}`, res);
    return res.body as T;
  }

  getPod(namespace: string, name: string): Promise<KubeObject> {
    return this.getObject(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`, `pod ${namespace}/${name}`);
  }

  getNetworkAttachmentDefinition(namespace: string, name: string): Promise<NetworkAttachmentDefinition> {
    return this.getObject(
      `/apis/k8s.cni.cncf.io/v1/namespaces/${encodeURIComponent(namespace)}/network-attachment-definitions/${encodeURIComponent(name)}`,
      `network-attachment-definition ${namespace}/${name}`,
    );
  }

  /**
   * Sets (or, with `value` undefined, removes) one pod annotation through pods/status, as a
   * JSON merge patch carrying the pod's resourceVersion (and uid): a pod that changed since it
   * was read answers 409, and the write is retried on a fresh read, unless the pod is another
   * one by now (same name, new uid).
   */
  async setPodAnnotation(pod: KubeObject, key: string, value: string | undefined): Promise<KubeObject> {
    const namespace = pod.metadata.namespace ?? '';
    const name = pod.metadata.name;
    const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}/status`;
    let current = pod;
    for (let attempt = 1; ; attempt++) {
      const patch = {
        metadata: {
          resourceVersion: current.metadata.resourceVersion,
          ...(current.metadata.uid ? { uid: current.metadata.uid } : {}),
          annotations: { [key]: value ?? null },
        },
      };
      const res = await this.request('PATCH', path, patch, 'application/merge-patch+json');
      if (res.status === 200 && isRecord(res.body)) return res.body as KubeObject;
      if (res.status !== 409 || attempt >= CONFLICT_RETRIES) throw this.failure(`PATCH pod ${namespace}/${name} status`, res);
      const fresh = await this.getPod(namespace, name);
      if (pod.metadata.uid && fresh.metadata.uid !== pod.metadata.uid) {
        throw new KubeError(409, 'Conflict', `pod ${namespace}/${name} was replaced (uid ${pod.metadata.uid} is now ${fresh.metadata.uid})`);
      }
      current = fresh;
    }
  }
}
