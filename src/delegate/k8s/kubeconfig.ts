/**
 * Where the API server is and how to authenticate: a kubeconfig file (the subset of YAML that
 * kubeconfigs are written in, or JSON) or the in-cluster service account. Tokens are given as
 * a path wherever the source has one, so the client re-reads them on every call and rotated
 * bound service-account tokens keep working.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { CniError, ErrorCode } from '../../cni/errors.js';
import { isRecord } from '../../cni/types.js';

export const IN_CLUSTER = 'in-cluster';
export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ClientConfig {
  /** https://host:port, without a trailing slash */
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  token?: string;
  /** read on every request */
  tokenFile?: string;
  insecureSkipTLSVerify?: boolean;
}

function configError(where: string, why: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `invalid kubeconfig ${where}: ${why}`);
}

interface Line {
  indent: number;
  text: string;
  no: number;
}

function stripComment(s: string): string {
  let quote: string | undefined;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === '#' && (i === 0 || /\s/.test(s[i - 1]!))) {
      return s.slice(0, i);
    }
  }
  return s;
}

function scalar(raw: string, where: string): unknown {
  const s = raw.trim();
  if (s === '' || s === '~' || s === 'null') return null;
  if (s === 'true') return true;
  if (s === 'false') return false;
  if (s === '[]') return [];
  if (s === '{}') return {};
  if (s.startsWith('"')) {
    try {
      return JSON.parse(s) as unknown;
    } catch {
      throw configError(where, `bad double-quoted string ${s}`);
    }
  }
  if (s.startsWith("'")) {
    if (!s.endsWith("'") || s.length < 2) throw configError(where, `bad single-quoted string ${s}`);
    return s.slice(1, -1).replace(/''/g, "'");
  }
  if (/^-?\d+$/.test(s)) return Number(s);
  if (s.startsWith('|') || s.startsWith('>')) throw configError(where, 'block scalars are not supported');
  return s;
}

/** The block-style YAML kubectl writes: mappings, sequences (also unindented under a key), scalars. */
export function parseYamlSubset(text: string, file = 'kubeconfig'): unknown {
  const lines: Line[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const noComment = stripComment(raw).replace(/\s+$/, '');
    if (noComment.trim() === '' || noComment === '---') return;
    if (/^\t/.test(noComment)) throw configError(`${file}:${i + 1}`, 'tabs are not allowed for indentation');
    const indent = noComment.length - noComment.trimStart().length;
    lines.push({ indent, text: noComment.trimStart(), no: i + 1 });
  });
  let pos = 0;

  const isItem = (l: Line) => l.text === '-' || l.text.startsWith('- ');

  function node(indent: number): unknown {
    const l = lines[pos];
    if (!l || l.indent < indent) return null;
    return isItem(l) ? sequence(l.indent) : mapping(l.indent);
  }

  function sequence(indent: number): unknown[] {
    const out: unknown[] = [];
    while (pos < lines.length && lines[pos]!.indent === indent && isItem(lines[pos]!)) {
      const l = lines[pos]!;
      const rest = l.text === '-' ? '' : l.text.slice(2);
      if (rest.trim() === '') {
        pos++;
        out.push(node(indent + 1));
        continue;
      }
      // "- key: v" opens a mapping whose other keys line up with "key".
      const offset = indent + 2 + (rest.length - rest.trimStart().length);
      if (/^[^"'][^:]*:(\s|$)/.test(rest.trimStart()) || /^["'].*["']\s*:(\s|$)/.test(rest.trimStart())) {
        lines[pos] = { indent: offset, text: rest.trimStart(), no: l.no };
        out.push(mapping(offset));
      } else {
        pos++;
        out.push(scalar(rest, `${file}:${l.no}`));
      }
    }
    return out;
  }

  function mapping(indent: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    while (pos < lines.length && lines[pos]!.indent === indent && !isItem(lines[pos]!)) {
      const l = lines[pos]!;
      const m = /^("(?:[^"\\]|\\.)*"|'[^']*'|[^:]+?)\s*:(?:\s+(.*))?$/.exec(l.text);
      if (!m) throw configError(`${file}:${l.no}`, `expected "key: value", got ${JSON.stringify(l.text)}`);
      const key = String(scalar(m[1]!, `${file}:${l.no}`));
      const value = m[2];
      pos++;
      if (value !== undefined && value.trim() !== '') {
        out[key] = scalar(value, `${file}:${l.no}`);
        continue;
      }
      const next = lines[pos];
      if (next && (next.indent > indent || (next.indent === indent && isItem(next)))) out[key] = node(next.indent);
      else out[key] = null;
    }
    if (pos < lines.length && lines[pos]!.indent > indent) {
      throw configError(`${file}:${lines[pos]!.no}`, 'unexpected indentation');
    }
    return out;
  }

  const root = node(0);
  if (pos < lines.length) throw configError(`${file}:${lines[pos]!.no}`, 'unexpected content');
  return root;
}

function named(list: unknown, key: string, name: string, file: string): Record<string, unknown> {
  const items = Array.isArray(list) ? list : [];
  const found = items.find((i) => isRecord(i) && i.name === name);
  if (!isRecord(found) || !isRecord(found[key])) throw configError(file, `no ${key} named ${JSON.stringify(name)}`);
  return found[key];
}

function readPath(base: string, p: string, what: string, file: string): Buffer {
  const path = isAbsolute(p) ? p : join(base, p);
  try {
    return readFileSync(path);
  } catch (err) {
    throw configError(file, `cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Loads a kubeconfig file (its current context), or the in-cluster service account. */
export function loadClientConfig(kubeconfig: string, env: NodeJS.ProcessEnv = process.env, saDir = SERVICE_ACCOUNT_DIR): ClientConfig {
  if (kubeconfig === IN_CLUSTER) return inClusterConfig(env, saDir);
  let text: string;
  try {
    text = readFileSync(kubeconfig, 'utf8');
  } catch (err) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid kubeconfig ${JSON.stringify(kubeconfig)}: ${(err as Error).message}`);
  }
  const doc = text.trimStart().startsWith('{') ? (JSON.parse(text) as unknown) : parseYamlSubset(text, kubeconfig);
  if (!isRecord(doc)) throw configError(kubeconfig, 'not a mapping');
  const contexts = Array.isArray(doc.contexts) ? doc.contexts : [];
  const contextName = str(doc['current-context']) ?? (isRecord(contexts[0]) ? str(contexts[0].name) : undefined);
  let clusterName: string | undefined;
  let userName: string | undefined;
  if (contextName) {
    const ctx = named(doc.contexts, 'context', contextName, kubeconfig);
    clusterName = str(ctx.cluster);
    userName = str(ctx.user);
  }
  const clusters = Array.isArray(doc.clusters) ? doc.clusters : [];
  const cluster = clusterName ? named(clusters, 'cluster', clusterName, kubeconfig) : isRecord(clusters[0]) && isRecord(clusters[0].cluster) ? clusters[0].cluster : undefined;
  if (!cluster) throw configError(kubeconfig, 'no cluster');
  const server = str(cluster.server);
  if (!server || !server.startsWith('https://')) throw configError(kubeconfig, `cluster server ${JSON.stringify(cluster.server)} must be an https:// URL`);
  const base = dirname(kubeconfig);
  const out: ClientConfig = { server: server.replace(/\/+$/, '') };
  if (str(cluster['certificate-authority-data'])) out.ca = Buffer.from(str(cluster['certificate-authority-data'])!, 'base64');
  else if (str(cluster['certificate-authority'])) out.ca = readPath(base, str(cluster['certificate-authority'])!, 'certificate-authority', kubeconfig);
  if (cluster['insecure-skip-tls-verify'] === true) out.insecureSkipTLSVerify = true;
  const users = Array.isArray(doc.users) ? doc.users : [];
  const user = userName ? named(users, 'user', userName, kubeconfig) : isRecord(users[0]) && isRecord(users[0].user) ? users[0].user : {};
  if (str(user['client-certificate-data'])) out.cert = Buffer.from(str(user['client-certificate-data'])!, 'base64');
  else if (str(user['client-certificate'])) out.cert = readPath(base, str(user['client-certificate'])!, 'client-certificate', kubeconfig);
  if (str(user['client-key-data'])) out.key = Buffer.from(str(user['client-key-data'])!, 'base64');
  else if (str(user['client-key'])) out.key = readPath(base, str(user['client-key'])!, 'client-key', kubeconfig);
  if (str(user.tokenFile)) {
    const tf = str(user.tokenFile)!;
    out.tokenFile = isAbsolute(tf) ? tf : join(base, tf);
  } else if (str(user.token)) {
    out.token = str(user.token);
  }
  return out;
}

/** The pod's service account, as client-go's rest.InClusterConfig reads it. */
export function inClusterConfig(env: NodeJS.ProcessEnv, saDir = SERVICE_ACCOUNT_DIR): ClientConfig {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, 'invalid kubeconfig "in-cluster": KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set');
  }
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    server: `https://${hostPart}:${port}`,
    ca: readPath(saDir, 'ca.crt', 'service account CA', IN_CLUSTER),
    tokenFile: join(saDir, 'token'),
  };
}
