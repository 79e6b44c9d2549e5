/**
 * The attachment cache: the resolved attachments of a pod, with each full config and, once
 * ADD has finished, each result. Written before the first delegate runs, so DEL and CHECK
 * work from it alone (no API server, no config change can make a DEL forget an attachment).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { CniError, ErrorCode } from '../cni/errors.js';
import type { NetConfList, Result } from '../cni/types.js';

export interface CachedAttachment {
  ifName: string;
  list: NetConfList;
  /** the chain's result in the 1.x shape, once its ADD succeeded */
  result?: Result;
}

export interface AttachmentCache {
  containerId: string;
  netns: string | undefined;
  attachments: CachedAttachment[];
}

export function cachePath(cniDir: string, containerId: string, ifName: string): string {
  return join(cniDir, `${containerId}-${ifName}.json`);
}

/** Writes atomically (temp, fsync, rename), 0600 in a 0700 directory. */
export function writeCache(cniDir: string, ifName: string, cache: AttachmentCache): void {
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
