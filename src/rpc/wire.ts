// gRPC over HTTP/2, the wire facts every server and client here shares (no library): status codes,
// the message size limit, length-prefixed framing (one frame(), one incremental FrameReader),
// grpc-timeout (one encoder, one parser that clamps), grpc-message percent-encoding, and the
// mapping of a finished stream (trailers, HTTP status, RST_STREAM code) to a status.
// CallError is what every client call rejects with.

/** Largest message either side sends or accepts (server.ts and the client). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** gRPC status codes (the numbers of the gRPC spec). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(Code).map(([k, v]) => [v, k]));

/** Human name of a status code ("UNAVAILABLE"), or the number for an unknown one. */
export function codeName(code: number): string {
  return NAMES[code] ?? String(code);
}

/** A failed call: carries the gRPC code; message is one line ("UNAVAILABLE: ..."). */
export class CallError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
  ) {
    super(`${codeName(code)}: ${details}`);
    this.name = "CallError";
  }
}

// ---- framing ----------------------------------------------------------------------------

/** One message with its 5-byte prefix (uncompressed flag, big-endian length). */
export function frame(msg: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + msg.length);
  out[0] = 0;
  out.writeUInt32BE(msg.length, 1);
  out.set(msg, 5);
  return out;
}

/** Builds the error a FrameReader throws; the server passes its RpcError, the client CallError. */
export type WireErrorFactory = (code: number, message: string) => Error;

const callError: WireErrorFactory = (code, message) => new CallError(code, message);

/**
 * Splits a body arriving in chunks into length-prefixed messages. Throws (through `error`) for a
 * compressed message (only identity is offered) and for one over the size limit, as soon as its
 * prefix arrives, before buffering it.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private need = -1;

  constructor(
    private readonly error: WireErrorFactory = callError,
    private readonly maxBytes = MAX_MESSAGE_BYTES,
  ) {}

  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.have += chunk.length;
    const out: Buffer[] = [];
    // Bounded: each pass consumes a 5-byte prefix or a whole message, or breaks.
    for (;;) {
      if (this.need < 0) {
        if (this.have < 5) break;
        const head = this.take(5);
        const flag = head[0];
        const len = head.readUInt32BE(1);
        if (flag !== 0)
          throw this.error(
            Code.UNIMPLEMENTED,
            "compressed messages are not supported (grpc-encoding identity only)",
          );
        if (len > this.maxBytes)
          throw this.error(
            Code.RESOURCE_EXHAUSTED,
            `received message larger than max (${len} vs. ${this.maxBytes})`,
          );
        this.need = len;
      }
      if (this.have < this.need) break;
      out.push(this.take(this.need));
      this.need = -1;
    }
    return out;
  }

  /** True when the body so far ends inside a message. */
  get partial(): boolean {
    return this.need >= 0 || this.have > 0;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0] as Buffer;
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.have -= n;
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0] as Buffer;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.have -= n;
    return out;
  }
}

/** The messages of a complete gRPC body; throws (through `error`) for a malformed one. */
export function unframe(body: Buffer, error: WireErrorFactory = callError): Buffer[] {
  const reader = new FrameReader(error);
  const out = reader.push(body);
  if (reader.partial) throw error(Code.INTERNAL, "Truncated gRPC message");
  return out;
}

// ---- grpc-timeout -----------------------------------------------------------------------

/**
 * The longest deadline honoured: setTimeout fires at once for a delay above 2^31-1 ms, so a
 * longer grpc-timeout (the format allows 99999999H, 11,000 years) is clamped to this (~24.8 days),
 * a long but finite deadline, never an instant one.
 */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** grpc-timeout ("100m", "5S", "1H", …) in milliseconds, clamped to MAX_TIMEOUT_MS; null when absent or malformed. */
export function parseGrpcTimeout(v: unknown): number | null {
  const m = typeof v === "string" ? /^(\d{1,8})([HMSmun])$/.exec(v) : null;
  if (!m) return null;
  const ms = Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  return Math.min(ms, MAX_TIMEOUT_MS);
}

/** The grpc-timeout header for a deadline ms away: at most 8 digits, so long deadlines go in seconds. */
export function encodeGrpcTimeout(ms: number): string {
  const t = Math.max(0, Math.ceil(ms));
  return t <= 99_999_999 ? `${t}m` : `${Math.min(Math.ceil(t / 1000), 99_999_999)}S`;
}

// ---- grpc-message -----------------------------------------------------------------------

/**
 * grpc-message is percent-encoded (gRPC over HTTP/2): the UTF-8 bytes outside printable ASCII,
 * and '%'. Nothing else: some peers decode with decodeURI, which leaves "%3A" as it is.
 */
export function encodeGrpcMessage(details: string): string {
  let out = "";
  for (const b of Buffer.from(details, "utf8")) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** Decodes a grpc-message; text that is not valid percent-encoded UTF-8 is kept as it is. */
export function decodeGrpcMessage(raw: string): string {
  if (!raw.includes("%")) return raw;
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 && /^[0-9A-Fa-f]{2}$/.test(raw.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (c < 0x80) bytes.push(c);
    else return raw; // a header value is ASCII; anything else was not encoded by a gRPC peer
  }
  try {
    return utf8Strict.decode(new Uint8Array(bytes));
  } catch {
    return raw;
  }
}

// ---- status of a finished call ----------------------------------------------------------

type HeaderMap = Record<string, string | string[] | number | undefined>;

/** The HTTP status mapping of the gRPC spec, for a response without grpc-status. */
export function codeFromHttpStatus(status: number): number {
  if (status === 400) return Code.INTERNAL;
  if (status === 401) return Code.UNAUTHENTICATED;
  if (status === 403) return Code.PERMISSION_DENIED;
  if (status === 404) return Code.UNIMPLEMENTED;
  if (status === 429 || status === 502 || status === 503 || status === 504) return Code.UNAVAILABLE;
  return Code.UNKNOWN;
}

/** HTTP/2 error codes (RFC 9113 §7) a stream reset can carry. */
export const Http2Error = {
  NO_ERROR: 0x0,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
} as const;

/** The status of a stream reset without a gRPC status. */
export function statusFromRstCode(rst: number): { code: number; details: string } {
  if (rst === Http2Error.REFUSED_STREAM)
    return { code: Code.UNAVAILABLE, details: "Stream refused by server" };
  if (rst === Http2Error.CANCEL) return { code: Code.CANCELLED, details: "Call cancelled" };
  if (rst === Http2Error.ENHANCE_YOUR_CALM)
    return { code: Code.RESOURCE_EXHAUSTED, details: "Bandwidth exhausted or memory limit exceeded" };
  if (rst === Http2Error.INADEQUATE_SECURITY)
    return { code: Code.PERMISSION_DENIED, details: "Protocol not secure enough" };
  return { code: Code.INTERNAL, details: `Received RST_STREAM with code ${rst}` };
}

/**
 * The status of a finished call: grpc-status from the trailers (or a trailers-only response),
 * else from the stream's reset code, else from the HTTP status. OK is { code: 0 }.
 */
export function statusOf(
  trailers: HeaderMap | null,
  headers: HeaderMap | null,
  rstCode: number | null,
): { code: number; details: string } {
  const src =
    trailers?.["grpc-status"] !== undefined
      ? trailers
      : headers?.["grpc-status"] !== undefined
        ? headers
        : null;
  if (src) {
    const code = Number(src["grpc-status"]);
    const msg = src["grpc-message"];
    return {
      code: Number.isInteger(code) && code >= 0 ? code : Code.UNKNOWN,
      details: decodeGrpcMessage(typeof msg === "string" ? msg : ""),
    };
  }
  if (rstCode !== null && rstCode !== Http2Error.NO_ERROR) return statusFromRstCode(rstCode);
  const http = Number(headers?.[":status"]);
  if (headers && http !== 200)
    return { code: codeFromHttpStatus(http), details: `Received HTTP status code ${http}` };
  return { code: Code.UNKNOWN, details: "No status information received" };
}
