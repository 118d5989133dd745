import { ERROR_CODES, type ErrorCode, isErrorCode } from './codes.js';

export interface JitErrorOptions {
  /** Safe to show to the user; defaults to the code's message. */
  message?: string;
  /** Overrides the code's hint. */
  hint?: string;
  /** Internal detail: logs only, never shown to a user or sent over the wire. */
  detail?: string;
  cause?: unknown;
}

/** The only error type that crosses a boundary on purpose. Anything else is a bug. */
export class JitError extends Error {
  readonly code: ErrorCode;
  readonly hint: string;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, opts: JitErrorOptions = {}) {
    super(opts.message ?? ERROR_CODES[code].message, { cause: opts.cause });
    this.name = 'JitError';
    this.code = code;
    this.hint = opts.hint ?? ERROR_CODES[code].hint;
    this.detail = opts.detail;
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  /** The wire form used in HTTP error bodies (see contract/http.ts ErrorBody). */
  toBody(): { error: { code: ErrorCode; message: string; hint: string } } {
    return { error: { code: this.code, message: this.message, hint: this.hint } };
  }
}

/** Rebuild a JitError from an HTTP error body; unknown shapes become JIT_INTERNAL. */
export function errorFromBody(body: unknown, fallback: ErrorCode = 'JIT_INTERNAL'): JitError {
  const e = (body as { error?: { code?: unknown; message?: unknown; hint?: unknown } } | null)?.error;
  if (e && isErrorCode(e.code)) {
    return new JitError(e.code, {
      message: typeof e.message === 'string' ? e.message.slice(0, 500) : undefined,
      hint: typeof e.hint === 'string' ? e.hint.slice(0, 500) : undefined,
    });
  }
  return new JitError(fallback);
}

export function isJitError(e: unknown): e is JitError {
  return e instanceof JitError;
}
