/**
 * The few libc calls Node does not expose. setns(2) moves the calling (main) thread into a
 * network namespace; a netlink socket opened there stays bound to that namespace.
 */
import koffi from 'koffi';

export const CLONE_NEWNET = 0x40000000;

let libcSetns: ((fd: number, nstype: number) => number) | undefined;
let libcErrno: (() => number) | undefined;

function bind(): void {
  const libc = koffi.load('libc.so.6');
  libcSetns = libc.func('int setns(int fd, int nstype)');
  const errnoLocation = libc.func('int *__errno_location(void)');
  libcErrno = () => koffi.decode(errnoLocation(), 'int') as number;
}

/** setns(2); throws an Error carrying `errno` and `code` like Node's own system errors. */
export function setns(fd: number, nstype: number = CLONE_NEWNET): void {
  if (!libcSetns) bind();
  if (libcSetns!(fd, nstype) !== 0) {
    const errno = libcErrno!();
    const err = new Error(`setns failed: errno ${errno}`) as NodeJS.ErrnoException;
    err.errno = errno;
    err.syscall = 'setns';
    throw err;
  }
}
