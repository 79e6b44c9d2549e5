/**
 * CNI error codes (CNI spec 1.1, "Error"). Codes 1-99 are reserved by the spec; 50/51 are
 * STATUS's "plugin not available" codes, 999 is the conventional "internal" code.
 */
export const ErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidNetworkConfig: 7,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  PluginNotAvailableLimitedConnectivity: 51,
  Internal: 999,
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode] | number;

/** An error that the CNI skeleton prints as the spec's error JSON. */
export class CniError extends Error {
  constructor(
    readonly code: ErrorCodeValue,
    msg: string,
    readonly details = '',
  ) {
    super(msg);
    this.name = 'CniError';
  }

  toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
    const out: { cniVersion: string; code: number; msg: string; details?: string } = {
      cniVersion,
      code: this.code,
      msg: this.message,
    };
    if (this.details) out.details = this.details;
    return out;
  }
}

/** A bad value in the network config: the message names the key and the value. */
export function invalidConfig(key: string, value: unknown, why: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${key} ${JSON.stringify(value)}: ${why}`);
}

/** Wraps anything thrown into a CniError, keeping CniErrors as they are. */
export function asCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err && typeof err === 'object' && 'toCniError' in err && typeof err.toCniError === 'function') {
    return (err as { toCniError(): CniError }).toCniError();
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new CniError(ErrorCode.Internal, msg);
}
