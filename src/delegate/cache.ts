/**
 * The attachment cache: the resolved attachments of a pod, with each full config and, once
 * ADD has finished, each result. Written before the first delegate runs, so DEL and CHECK
 * work from it alone (no API server, no config change can make a DEL forget an attachment).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CniError, ErrorCode } from '../cni/errors.js';
import type { NetConfList, Result } from '../cni/types.js';

export interface CachedAttachment {
  ifName: string;
  list: NetConfList;
  /** the chain's result in the 1.x shape, once its ADD succeeded */
  result?: Result;
  /** the name in network-status: the primary's conf name, or namespace/name of a NAD */
  network?: string;
  /** the runtime config the chain's plugins get for their capabilities (ips, mac, portMappings …) */
  runtimeConfig?: Record<string, unknown>;
  /** CNI_ARGS this attachment adds to the runtime's (IP=, MAC=) */
  cniArgs?: Record<string, string>;
  /** gateways the pod's default route was moved to */
  defaultRoute?: string[];
}

export interface AttachmentCache {
  containerId: string;
  /** the runtime's CNI_IFNAME (the primary's interface); part of the cache key */
  ifName?: string;
  netns: string | undefined;
  /** the pod, when it was read from the API server */
  pod?: { namespace: string; name: string; uid?: string };
  attachments: CachedAttachment[];
}

export function cachePath(cniDir: string, containerId: string, ifName: string): string {
  return join(cniDir, `${containerId}-${ifName}.json`);
}

/** Writes atomically (temp, fsync, rename), 0600 in a 0700 directory. */
export function writeCache(cniDir: string, ifName: string, cache: AttachmentCache): void {
  cache.ifName = ifName;
  const path = cachePath(cniDir, cache.containerId, ifName);
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(cniDir, { recursive: true, mode: 0o700 });
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(cache));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new CniError(ErrorCode.IoFailure, `failed to write attachment cache ${path}: ${(err as Error).message}`);
  }
}

export function readCache(cniDir: string, containerId: string, ifName: string): AttachmentCache | undefined {
  const path = cachePath(cniDir, containerId, ifName);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CniError(ErrorCode.IoFailure, `failed to read attachment cache ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as AttachmentCache;
  } catch (err) {
    throw new CniError(ErrorCode.IoFailure, `attachment cache ${path} is corrupt: ${(err as Error).message}`);
  }
}

export function removeCache(cniDir: string, containerId: string, ifName: string): void {
  rmSync(cachePath(cniDir, containerId, ifName), { force: true });
}

/** Every cache entry in cniDir with its file name; unreadable or foreign files are skipped. */
export function listCaches(cniDir: string): Array<{ file: string; cache: AttachmentCache }> {
  let names: string[];
  try {
    names = readdirSync(cniDir);
  } catch {
    return [];
  }
  const out: Array<{ file: string; cache: AttachmentCache }> = [];
  for (const file of names.sort()) {
    if (!file.endsWith('.json')) continue;
    try {
      const cache = JSON.parse(readFileSync(join(cniDir, file), 'utf8')) as AttachmentCache;
      if (typeof cache.containerId === 'string' && Array.isArray(cache.attachments)) out.push({ file, cache });
    } catch {
      // half-written or foreign: not ours to judge here
    }
  }
  return out;
}

export function removeCacheFile(cniDir: string, file: string): void {
  rmSync(join(cniDir, file), { force: true });
}
