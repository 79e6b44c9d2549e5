/**
 * The few libc calls Node does not expose. setns(2) moves the calling (main) thread into a
 * network namespace; a netlink socket opened there stays bound to that namespace.
 */
import { getSystemErrorName } from 'node:util';
import { loadKoffi } from './koffi.js';

export const CLONE_NEWNET = 0x40000000;

let libcSetns: ((fd: number, nstype: number) => number) | undefined;
let libcFlock: ((fd: number, operation: number) => number) | undefined;
let lastErrno: (() => number) | undefined;

function bind(): void {
  const koffi = loadKoffi();
  const libc = koffi.load('libc.so.6');
  libcSetns = libc.func('int setns(int fd, int nstype)');
  libcFlock = libc.func('int flock(int fd, int operation)');
  // koffi saves errno right after each native call; reading it through __errno_location()
  // later could see a value clobbered by whatever libc work V8 did in between.
  lastErrno = () => koffi.errno();
}

function systemError(syscall: string): NodeJS.ErrnoException {
  const errno = lastErrno!();
  let code: string;
  try {
    code = getSystemErrorName(-errno);
  } catch {
    code = `errno ${errno}`;
  }
  const err = new Error(`${syscall} failed: ${code}`) as NodeJS.ErrnoException;
  err.errno = errno;
  err.code = code;
  err.syscall = syscall;
  return err;
}

export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/**
 * flock(2) without blocking: true when the lock was taken, false when another open file holds
 * it (EWOULDBLOCK). Callers poll, so the event loop never blocks on a lock.
 */
export function tryFlock(fd: number, operation: number = LOCK_EX): boolean {
  if (!libcFlock) bind();
  if (libcFlock!(fd, operation | LOCK_NB) === 0) return true;
  const err = systemError('flock');
  if (err.code === 'EWOULDBLOCK' || err.code === 'EAGAIN') return false;
  throw err;
}

/** setns(2); throws an Error carrying `errno` and `code` like Node's own system errors. */
export function setns(fd: number, nstype: number = CLONE_NEWNET): void {
  if (!libcSetns) bind();
  if (libcSetns!(fd, nstype) !== 0) {
    const errno = lastErrno!();
    let code: string;
    try {
      code = getSystemErrorName(-errno);
    } catch {
      code = `errno ${errno}`;
    }
    const err = new Error(`setns failed: ${code}`) as NodeJS.ErrnoException;
    err.errno = errno;
    err.code = code;
    err.syscall = 'setns';
    throw err;
  }
}
