/**
 * A small etcd v3 client: the KV Range and Txn calls and authentication, over the JSON
 * gateway every etcd v3 server (3.4 and later) serves on its client port (POST /v3/kv/range,
 * /v3/kv/txn, /v3/auth/authenticate; keys and values base64, int64s as strings).
 *
 * Why not the `etcd3` package: it loads grpc-js and protobufjs (about 155 ms per process, the
 * whole budget of an ADD) and reads its .proto files from disk at run time, which a single
 * executable does not have. These calls are the same etcd v3 API, with TLS and auth, in a
 * module that costs nothing until a pool on etcd is used. node:http(s) are loaded on first use
 * through process.getBuiltinModule (import() of a built-in fails inside the executable).
 */
import { readFileSync } from 'node:fs';
import type { Agent as HttpAgent } from 'node:http';
import { StoreUnavailable } from './optimistic.js';

export interface EtcdConfig {
  /** http(s)://host:port, or host:port (https when TLS files are given) */
  endpoints: string[];
  username?: string;
  password?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

export interface KeyValue {
  key: string;
  value: string;
  modRevision: string;
  createRevision: string;
}

export type TxnCompare =
  | { key: string; modRevision: string }
  /** the key does not exist */
  | { key: string; absent: true };

export type TxnOp = { put: string; value: string } | { del: string };

/** An answer that is not a transport failure: the request was refused for good (auth, bad request). */
export class EtcdError extends Error {
  constructor(
    readonly status: number,
    msg: string,
  ) {
    super(msg);
    this.name = 'EtcdError';
  }
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64').toString('utf8') : '');

/** The first key after every key with this prefix (etcd's range_end for a prefix). */
function prefixEnd(prefix: string): string {
  const buf = Buffer.from(prefix, 'utf8');
  for (let i = buf.length - 1; i >= 0; i--) {
    if (buf[i]! < 0xff) {
      const end = buf.subarray(0, i + 1);
      end[i]! += 1;
      return end.toString('base64');
    }
  }
  return Buffer.from([0]).toString('base64');
}

type Json = Record<string, unknown>;

export class EtcdClient {
  private readonly urls: URL[];
  private readonly tls: boolean;
  private agent: HttpAgent | undefined;
  private token: string | undefined;
  /** the endpoint that answered last: tried first */
  private current = 0;

  constructor(readonly config: EtcdConfig) {
    this.tls = !!(config.caFile || config.certFile);
    this.urls = config.endpoints.map((e) => new URL(/^https?:\/\//.test(e) ? e : `${this.tls ? 'https' : 'http'}://${e}`));
    if (this.urls.length === 0) throw new Error('no etcd endpoint');
  }

  get location(): string {
    return this.urls.map((u) => u.host).join(',');
  }

  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }

  private module(url: URL): typeof import('node:https') | typeof import('node:http') {
    return url.protocol === 'https:' ? process.getBuiltinModule('node:https') : process.getBuiltinModule('node:http');
  }

  private agentFor(url: URL): HttpAgent {
    if (this.agent) return this.agent;
    if (url.protocol === 'https:') {
      const https = process.getBuiltinModule('node:https');
      const c = this.config;
      this.agent = new https.Agent({
        keepAlive: true,
        ca: c.caFile ? readFileSync(c.caFile) : undefined,
        cert: c.certFile ? readFileSync(c.certFile) : undefined,
        key: c.keyFile ? readFileSync(c.keyFile) : undefined,
      });
    } else {
      this.agent = new (process.getBuiltinModule('node:http').Agent)({ keepAlive: true });
    }
    return this.agent;
  }

  private once(url: URL, path: string, body: Json, deadline: number, auth: boolean): Promise<{ status: number; body: Json }> {
    const payload = Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) };
    if (auth && this.token) headers.Authorization = this.token;
    const mod = this.module(url);
    const what = `etcd ${url.host}${path}`;
    return new Promise((resolve, reject) => {
      const ms = deadline - Date.now();
      if (ms <= 0) {
        reject(new StoreUnavailable(`${what}: no time left`));
        return;
      }
      const req = mod.request(
        { method: 'POST', hostname: url.hostname.replace(/^\[|\]$/g, ''), port: url.port || (url.protocol === 'https:' ? 443 : 2379), path, headers, agent: this.agentFor(url) },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            clearTimeout(timer);
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: Json = {};
            try {
              parsed = text ? (JSON.parse(text) as Json) : {};
            } catch {
              parsed = { error: text.slice(0, 200) };
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', (err) => {
            clearTimeout(timer);
            reject(new StoreUnavailable(`${what}: ${err.message}`));
          });
        },
      );
      const timer = setTimeout(() => req.destroy(new StoreUnavailable(`${what}: no answer within ${ms} ms`)), ms);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err instanceof StoreUnavailable ? err : new StoreUnavailable(`${what}: ${err.message}`));
      });
      req.end(payload);
    });
  }

  private async authenticate(url: URL, deadline: number): Promise<void> {
    const res = await this.once(url, '/v3/auth/authenticate', { name: this.config.username, password: this.config.password ?? '' }, deadline, false);
    if (res.status !== 200 || typeof res.body.token !== 'string') {
      throw new EtcdError(res.status, `etcd ${url.host}: authentication as ${JSON.stringify(this.config.username)} failed: ${errorText(res.body)}`);
    }
    this.token = res.body.token;
  }

  /** One call, on the endpoints in turn until one answers; transport failures are StoreUnavailable. */
  async call(path: string, body: Json, deadline: number): Promise<Json> {
    let last: StoreUnavailable | undefined;
    for (let i = 0; i < this.urls.length; i++) {
      const idx = (this.current + i) % this.urls.length;
      const url = this.urls[idx]!;
      try {
        if (this.config.username && !this.token) await this.authenticate(url, deadline);
        let res = await this.once(url, path, body, deadline, true);
        if (res.status === 401 && this.config.username) {
          // the token expired: once more with a new one
          await this.authenticate(url, deadline);
          res = await this.once(url, path, body, deadline, true);
        }
        this.current = idx;
        if (res.status === 200) return res.body;
        if (res.status >= 500 || res.status === 429) throw new StoreUnavailable(`etcd ${url.host}${path}: ${res.status} ${errorText(res.body)}`);
        throw new EtcdError(res.status, `etcd ${url.host}${path}: ${res.status} ${errorText(res.body)}`);
      } catch (err) {
        if (!(err instanceof StoreUnavailable)) throw err;
        last = err;
        // a dead connection of the pool is not reused
        this.close();
      }
    }
    throw last!;
  }

  async get(key: string, deadline: number): Promise<KeyValue | undefined> {
    const res = await this.call('/v3/kv/range', { key: b64(key) }, deadline);
    const kv = Array.isArray(res.kvs) ? (res.kvs[0] as Json | undefined) : undefined;
    return kv ? toKeyValue(kv) : undefined;
  }

  async list(prefix: string, deadline: number): Promise<KeyValue[]> {
    const res = await this.call('/v3/kv/range', { key: b64(prefix), range_end: prefixEnd(prefix) }, deadline);
    return (Array.isArray(res.kvs) ? (res.kvs as Json[]) : []).map(toKeyValue);
  }

  /** Applies ops if every compare holds; false when one does not (nothing applied). */
  async txn(compares: TxnCompare[], ops: TxnOp[], deadline: number): Promise<boolean> {
    const compare = compares.map((c) =>
      'absent' in c
        ? { key: b64(c.key), target: 'CREATE', result: 'EQUAL', create_revision: '0' }
        : { key: b64(c.key), target: 'MOD', result: 'EQUAL', mod_revision: c.modRevision },
    );
    const success = ops.map((o) => ('put' in o ? { request_put: { key: b64(o.put), value: b64(o.value) } } : { request_delete_range: { key: b64(o.del) } }));
    const res = await this.call('/v3/kv/txn', { compare, success }, deadline);
    return res.succeeded === true;
  }
}

function toKeyValue(kv: Json): KeyValue {
  return {
    key: unb64(kv.key as string),
    value: unb64(kv.value as string | undefined),
    modRevision: String(kv.mod_revision ?? kv.modRevision ?? '0'),
    createRevision: String(kv.create_revision ?? kv.createRevision ?? '0'),
  };
}

function errorText(body: Json): string {
  return String(body.message ?? body.error ?? JSON.stringify(body)).slice(0, 300);
}
