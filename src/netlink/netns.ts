/**
 * Entering network namespaces. setns(2) moves only the calling thread, so the main thread
 * enters the target namespace, opens what must live there (a netlink socket, a /proc/sys
 * file) synchronously, and returns at once. Nothing async may run while it is inside.
 */
import { closeSync, openSync } from 'node:fs';
import { CLONE_NEWNET, setns } from '../native/index.js';
import { NetlinkError, toNetlinkError } from './errors.js';

let originFd: number | undefined;

/** The namespace the process started in: where the runtime exec'd us (the node's). */
function originNetns(): number {
  if (originFd === undefined) originFd = openSync('/proc/thread-self/ns/net', 'r');
  return originFd;
}

/** Opens a namespace by path (e.g. CNI_NETNS); the caller closes the fd. */
export function openNetns(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    throw toNetlinkError(err, 'open network namespace', JSON.stringify(path));
  }
}

/** Runs `fn` synchronously with the main thread in the namespace `fd`, then returns home. */
export function inNetns<T>(fd: number, what: string, fn: () => T): T {
  const home = originNetns();
  try {
    setns(fd, CLONE_NEWNET);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // A failure before the syscall (loading the native code) carries no errno: keep its message.
    if (typeof e.errno !== 'number') throw err;
    // EINVAL: the path is not a network namespace.
    throw new NetlinkError('enter network namespace', what, e.errno === 22 ? 'EINVAL' : `errno ${e.errno}`, e.errno);
  }
  try {
    return fn();
  } finally {
    setns(home, CLONE_NEWNET);
  }
}

/** Runs `fn` in the namespace at `path`. */
export function inNetnsPath<T>(path: string, fn: () => T): T {
  const fd = openNetns(path);
  try {
    return inNetns(fd, JSON.stringify(path), fn);
  } finally {
    closeSync(fd);
  }
}
