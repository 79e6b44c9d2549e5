import { constants } from 'node:os';
import { CniError, ErrorCode } from '../cni/errors.js';

const ERRNO_BY_CODE = constants.errno as Record<string, number>;

/**
 * A kernel refusal, typed: which operation on which object failed, and the errno. It becomes a
 * CNI error (code 999, or 11 for a busy kernel) when it reaches the skeleton.
 */
export class NetlinkError extends Error {
  constructor(
    readonly operation: string,
    readonly object: string,
    readonly code: string,
    readonly errno: number,
  ) {
    super(`${operation} ${object}: ${code}${describe(code)}`);
    this.name = 'NetlinkError';
  }

  toCniError(): CniError {
    const cniCode = this.code === 'EBUSY' || this.code === 'EAGAIN' ? ErrorCode.TryAgainLater : ErrorCode.Internal;
    return new CniError(cniCode, this.message);
  }

  /** Whether the object was already absent (ENODEV, ENOENT, ESRCH, EADDRNOTAVAIL). */
  get isNotFound(): boolean {
    return this.code === 'ENODEV' || this.code === 'ENOENT' || this.code === 'ESRCH' || this.code === 'EADDRNOTAVAIL';
  }

  get isExists(): boolean {
    return this.code === 'EEXIST';
  }
}

const DESCRIPTIONS: Record<string, string> = {
  EEXIST: 'file exists',
  ENODEV: 'no such device',
  ENOENT: 'no such file or directory',
  ESRCH: 'no such process',
  EINVAL: 'invalid argument',
  EPERM: 'operation not permitted',
  EBUSY: 'device or resource busy',
  ENETUNREACH: 'network is unreachable',
  EADDRNOTAVAIL: 'cannot assign requested address',
  EOPNOTSUPP: 'operation not supported',
  ERANGE: 'numerical result out of range',
};

function describe(code: string): string {
  const text = DESCRIPTIONS[code];
  return text ? ` (${text})` : '';
}

/** Turns the netlink package's "Request rejected: EEXIST" (or a system error) into a NetlinkError. */
export function toNetlinkError(err: unknown, operation: string, object: string): NetlinkError {
  if (err instanceof NetlinkError) return err;
  const e = err as NodeJS.ErrnoException;
  let code = typeof e?.code === 'string' ? e.code : '';
  const m = /Request rejected: (\w+)/.exec(e?.message ?? '');
  if (m) code = m[1]!;
  if (/^-?\d+$/.test(code)) code = `errno ${code}`;
  if (!code) code = e?.message ?? String(err);
  const errno = ERRNO_BY_CODE[code] ?? (typeof e?.errno === 'number' ? Math.abs(e.errno) : 0);
  return new NetlinkError(operation, object, code, errno);
}

export function isNotFound(err: unknown): boolean {
  return err instanceof NetlinkError && err.isNotFound;
}
