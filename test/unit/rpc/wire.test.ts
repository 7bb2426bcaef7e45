// The wire module (src/rpc/wire.ts): framing round trips through the incremental reader whatever
// the chunking, the size and compression refusals, grpc-timeout encoding and the clamped parser,
// grpc-message percent-encoding (only what the spec requires) and the status of a finished call.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  CallError,
  Code,
  decodeGrpcMessage,
  encodeGrpcMessage,
  encodeGrpcTimeout,
  FrameReader,
  frame,
  MAX_MESSAGE_BYTES,
  MAX_TIMEOUT_MS,
  parseGrpcTimeout,
  statusOf,
  unframe,
} from "../../../src/rpc/wire.ts";

/** Splits `buf` at the given cut points (sorted, deduplicated, inside the buffer). */
function chunks(buf: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, buf.length]) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  return out;
}

describe("framing", () => {
  test("frame then FrameReader gives the messages back, however the body is chunked", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (msgs, cuts) => {
          const body = Buffer.concat(msgs.map((m) => frame(m)));
          const reader = new FrameReader();
          const got: number[][] = [];
          for (const c of chunks(body, cuts)) for (const m of reader.push(c)) got.push([...m]);
          expect(got).toEqual(msgs.map((m) => [...m]));
          expect(reader.partial).toBe(false);
          expect(unframe(body).map((m) => [...m])).toEqual(got);
        },
      ),
      { numRuns: 300 },
    );
  });

  test("a body cut inside a message is partial; unframe calls it truncated", () => {
    const body = frame(new Uint8Array([1, 2, 3]));
    const reader = new FrameReader();
    expect(reader.push(body.subarray(0, 6))).toEqual([]);
    expect(reader.partial).toBe(true);
    expect(() => unframe(body.subarray(0, 7))).toThrow("Truncated gRPC message");
    expect(() => unframe(body.subarray(0, 3))).toThrow("Truncated gRPC message");
  });

  test("an oversized message is refused from its prefix, before its bytes arrive", () => {
    const head = Buffer.from([0, 0, 0, 0, 0]);
    head.writeUInt32BE(MAX_MESSAGE_BYTES + 1, 1);
    let err: unknown;
    try {
      new FrameReader().push(head);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CallError);
    expect((err as CallError).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect((err as CallError).details).toBe(
      `received message larger than max (${MAX_MESSAGE_BYTES + 1} vs. ${MAX_MESSAGE_BYTES})`,
    );
    // Exactly the limit is accepted.
    head.writeUInt32BE(MAX_MESSAGE_BYTES, 1);
    expect(new FrameReader().push(head)).toEqual([]);
  });

  test("the error factory decides the error type (the server passes its own); compression is refused", () => {
    class Mine extends Error {
      constructor(
        readonly code: number,
        message: string,
      ) {
        super(message);
      }
    }
    const reader = new FrameReader((code, msg) => new Mine(code, msg), 4);
    expect(() => reader.push(frame(new Uint8Array(5)))).toThrow(Mine);
    const compressed = frame(new Uint8Array([9]));
    compressed[0] = 1;
    let err: unknown;
    try {
      new FrameReader((code, msg) => new Mine(code, msg)).push(compressed);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Mine);
    expect((err as Mine).code).toBe(Code.UNIMPLEMENTED);
    expect((err as Mine).message).toContain("compressed");
  });
});

describe("grpc-timeout", () => {
  test("units parse to milliseconds; malformed values are absent", () => {
    expect(parseGrpcTimeout("100m")).toBe(100);
    expect(parseGrpcTimeout("5S")).toBe(5000);
    expect(parseGrpcTimeout("2M")).toBe(120_000);
    expect(parseGrpcTimeout("1H")).toBe(3_600_000);
    expect(parseGrpcTimeout("1500u")).toBeCloseTo(1.5);
    expect(parseGrpcTimeout("2000000n")).toBeCloseTo(2);
    for (const bad of [undefined, "", "5", "m", "-1S", "1.5S", "123456789S", "5s", " 5S", ["5S"], 5])
      expect(parseGrpcTimeout(bad)).toBeNull();
  });

  test("absurd values are clamped to a long, finite deadline (setTimeout would fire at once)", () => {
    expect(parseGrpcTimeout("99999999H")).toBe(MAX_TIMEOUT_MS);
    expect(parseGrpcTimeout("99999999S")).toBe(MAX_TIMEOUT_MS);
    expect(parseGrpcTimeout("99999999m")).toBe(99_999_999);
    expect(MAX_TIMEOUT_MS).toBe(2 ** 31 - 1);
    // A timer with the clamped delay really waits (it does not fire on the next tick).
    let fired = false;
    const t = setTimeout(() => {
      fired = true;
    }, parseGrpcTimeout("99999999H")!);
    return Bun.sleep(30).then(() => {
      clearTimeout(t);
      expect(fired).toBe(false);
    });
  });

  test("every parsed value is within [0, MAX_TIMEOUT_MS]", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 99_999_999 }),
        fc.constantFrom("H", "M", "S", "m", "u", "n"),
        (n, u) => {
          const ms = parseGrpcTimeout(`${n}${u}`)!;
          expect(ms).toBeGreaterThanOrEqual(0);
          expect(ms).toBeLessThanOrEqual(MAX_TIMEOUT_MS);
        },
      ),
    );
  });

  test("the encoder stays within 8 digits and never shortens a deadline", () => {
    expect(encodeGrpcTimeout(60_000)).toBe("60000m");
    expect(encodeGrpcTimeout(99_999_999)).toBe("99999999m");
    expect(encodeGrpcTimeout(100_000_000)).toBe("100000S");
    expect(encodeGrpcTimeout(-5)).toBe("0m");
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (ms) => {
        const v = encodeGrpcTimeout(ms);
        expect(v).toMatch(/^\d{1,8}[mS]$/);
        const back = parseGrpcTimeout(v)!;
        expect(back).toBeGreaterThanOrEqual(Math.min(ms, MAX_TIMEOUT_MS));
      }),
    );
  });
});

describe("grpc-message", () => {
  test("only bytes outside 0x20–0x7E and '%' are encoded", () => {
    expect(encodeGrpcMessage("a:b /c?d=e")).toBe("a:b /c?d=e");
    expect(encodeGrpcMessage("100%")).toBe("100%25");
    expect(encodeGrpcMessage("ü\n")).toBe("%C3%BC%0A");
  });

  test("decode(encode(s)) is s for any text; the encoded form is printable ASCII", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 60 }), (s) => {
        const enc = encodeGrpcMessage(s);
        expect(enc).toMatch(/^[\x20-\x7e]*$/);
        expect(decodeGrpcMessage(enc)).toBe(s);
      }),
      { numRuns: 500 },
    );
  });

  test("text that is not valid percent-encoded UTF-8 is kept as it is", () => {
    expect(decodeGrpcMessage("a%20b%C3%BC")).toBe("a bü");
    expect(decodeGrpcMessage("a%3Ab")).toBe("a:b");
    expect(decodeGrpcMessage("100%")).toBe("100%");
    expect(decodeGrpcMessage("%zz")).toBe("%zz");
    expect(decodeGrpcMessage("%C3")).toBe("%C3");
  });
});

describe("status of a finished call", () => {
  test("grpc-status from trailers, then from a trailers-only response", () => {
    expect(statusOf({ "grpc-status": "0" }, { ":status": 200 }, 0)).toEqual({ code: 0, details: "" });
    expect(statusOf({ "grpc-status": "5", "grpc-message": "no%20such" }, { ":status": 200 }, 0)).toEqual({
      code: Code.NOT_FOUND,
      details: "no such",
    });
    expect(statusOf(null, { ":status": 200, "grpc-status": "16", "grpc-message": "who" }, null)).toEqual({
      code: Code.UNAUTHENTICATED,
      details: "who",
    });
    expect(statusOf({ "grpc-status": "x" }, null, null).code).toBe(Code.UNKNOWN);
  });

  test("a reset without status maps by its HTTP/2 code; a non-200 without status by the HTTP status", () => {
    expect(statusOf(null, null, 7).code).toBe(Code.UNAVAILABLE);
    expect(statusOf(null, null, 8).code).toBe(Code.CANCELLED);
    expect(statusOf(null, null, 0xb).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(statusOf(null, null, 0xc).code).toBe(Code.PERMISSION_DENIED);
    expect(statusOf(null, null, 2)).toEqual({
      code: Code.INTERNAL,
      details: "Received RST_STREAM with code 2",
    });
    const http = (s: number) => statusOf(null, { ":status": s }, 0).code;
    expect([400, 401, 403, 404, 429, 502, 503, 504, 500].map(http)).toEqual([
      Code.INTERNAL,
      Code.UNAUTHENTICATED,
      Code.PERMISSION_DENIED,
      Code.UNIMPLEMENTED,
      Code.UNAVAILABLE,
      Code.UNAVAILABLE,
      Code.UNAVAILABLE,
      Code.UNAVAILABLE,
      Code.UNKNOWN,
    ]);
    expect(statusOf(null, { ":status": 200 }, 0)).toEqual({
      code: Code.UNKNOWN,
      details: "No status information received",
    });
  });
});
