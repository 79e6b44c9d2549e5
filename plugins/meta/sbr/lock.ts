/**
 * The per-namespace lock of sbr: flock(2) on the network namespace itself. Two attachments of
 * one pod must not pick the same table, so their sbr steps run one at a time. Locking the
 * namespace inode (rather than a file of our own) needs no lock files that outlive pods, works
 * whatever path names the namespace, and excludes the reference sbr too, which locks the same
 * inode.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CniError, ErrorCode } from '../../../src/cni/errors.js';
import { LOCK_EX, LOCK_UN, tryFlock } from '../../../src/native/index.js';

const POLL_MS = 2;
const TIMEOUT_MS = 60_000;

/** Holders in this process, by namespace: flock would let a second fd of ours wait on the first. */
const local = new Map<string, Promise<void>>();

/** Runs `fn` holding the lock of the namespace open as `fd` (named `what` in errors). */
export async function withNetnsLock<T>(fd: number, key: string, fn: () => Promise<T>): Promise<T> {
  const before = local.get(key) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const chained = before.then(() => mine);
  local.set(key, chained);
  await before;
  try {
    const deadline = Date.now() + TIMEOUT_MS;
    while (!tryFlock(fd, LOCK_EX)) {
      if (Date.now() > deadline) {
        throw new CniError(ErrorCode.TryAgainLater, `timed out after ${TIMEOUT_MS / 1000} s waiting for the lock on network namespace ${key}`);
      }
      await sleep(POLL_MS);
    }
    try {
      return await fn();
    } finally {
      tryFlock(fd, LOCK_UN);
    }
  } finally {
    release();
    if (local.get(key) === chained) local.delete(key);
  }
}
