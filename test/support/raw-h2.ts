// A raw HTTP/2 client for server-limit probes: writes frames straight onto a TLS socket, so it can
// do what a well-behaved client library refuses to do — open streams past the server's advertised
// SETTINGS_MAX_CONCURRENT_STREAMS, send HEADERS + RST_STREAM pairs by the thousand (rapid reset),
// or a header list of any size — and records what the server sent back (SETTINGS, RST_STREAM,
// GOAWAY, response HEADERS) without any client-side flow or stream limits in the way.
import tls from "node:tls";

export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const ERR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, CANCEL: 8, REFUSED_STREAM: 7, ENHANCE_YOUR_CALM: 11 };
export const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
export const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK integer with an n-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix. */
function hpackInt(value: number, prefixBits: number, first: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

const hpackString = (s: string) => {
  const b = Buffer.from(s, "latin1");
  return Buffer.concat([hpackInt(b.length, 7, 0), b]);
};

/** A header block of literal fields without indexing (no dynamic table, no Huffman). */
export function headerBlock(headers: [string, string][]): Buffer {
  return Buffer.concat(headers.flatMap(([k, v]) => [Buffer.from([0]), hpackString(k), hpackString(v)]));
}

export function grpcRequestHeaders(path: string, extra: [string, string][] = []): Buffer {
  return headerBlock([
    [":method", "POST"],
    [":scheme", "https"],
    [":path", path],
    [":authority", "localhost"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ...extra,
  ]);
}

/** HEADERS (+ CONTINUATION when the block exceeds the default 16 KiB frame size). */
export function headersFrames(streamId: number, block: Buffer, endStream: boolean): Buffer {
  const max = 16_384;
  const parts: Buffer[] = [];
  for (let off = 0; off < block.length || off === 0; off += max) {
    parts.push(block.subarray(off, off + max));
    if (block.length === 0) break;
  }
  return Buffer.concat(
    parts.map((p, i) => {
      const last = i === parts.length - 1;
      const flags = (last ? FLAG.END_HEADERS : 0) | (i === 0 && endStream ? FLAG.END_STREAM : 0);
      return frame(i === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, flags, streamId, p);
    }),
  );
}

export function rstStream(streamId: number, code = ERR.CANCEL): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code, 0);
  return frame(FRAME.RST_STREAM, 0, streamId, p);
}

export function dataFrame(streamId: number, body: Buffer, endStream: boolean): Buffer {
  return frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, streamId, body);
}

export interface RawH2 {
  socket: tls.TLSSocket;
  /** The server's SETTINGS (id → value), once its first SETTINGS frame arrived. */
  settings: Map<number, number>;
  /** RST_STREAM codes the server sent, by stream id. */
  resets: Map<number, number>;
  /** Streams the server answered with a HEADERS frame (response headers or trailers-only). */
  answered: Set<number>;
  /** The error code of the server's first GOAWAY (a second one, NO_ERROR, may follow at close). */
  goaway: number | null;
  /** Resolves when the connection is gone (either side). */
  closed: Promise<void>;
  write(b: Buffer): boolean;
  /** Resolves once the socket can take more (after a write returned false). */
  drained(): Promise<void>;
  close(): void;
}

/**
 * Connects over TLS 1.3 with ALPN h2, sends the preface and an empty SETTINGS frame; resolves once
 * the server's SETTINGS arrived (rejects if the connection fails first).
 */
export function connectRawH2(port: number, host = "127.0.0.1"): Promise<RawH2> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      ALPNProtocols: ["h2"],
      rejectUnauthorized: false,
      minVersion: "TLSv1.3",
    });
    let onClosed: () => void = () => {};
    const c: RawH2 = {
      socket,
      settings: new Map(),
      resets: new Map(),
      answered: new Set(),
      goaway: null,
      closed: new Promise<void>((r) => {
        onClosed = r;
      }),
      write: (b) => !socket.destroyed && socket.write(b),
      drained: () =>
        new Promise<void>((r) => {
          if (socket.destroyed || !socket.writableNeedDrain) return r();
          const go = () => {
            socket.off("drain", go);
            socket.off("close", go);
            r();
          };
          socket.on("drain", go);
          socket.on("close", go);
        }),
      close: () => socket.destroy(),
    };
    let buf: Buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3] as number;
        const flags = buf[4] as number;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        const p = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === FRAME.SETTINGS && !(flags & FLAG.ACK)) {
          for (let off = 0; off + 6 <= p.length; off += 6)
            c.settings.set(p.readUInt16BE(off), p.readUInt32BE(off + 2));
          c.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
          resolve(c); // connected: the server's limits are known
        } else if (type === FRAME.RST_STREAM) c.resets.set(id, p.readUInt32BE(0));
        else if (type === FRAME.HEADERS) c.answered.add(id);
        else if (type === FRAME.GOAWAY)
          c.goaway ??= p.readUInt32BE(4); // the first one says why
        else if (type === FRAME.PING && !(flags & FLAG.ACK)) c.write(frame(FRAME.PING, FLAG.ACK, 0, p));
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => onClosed());
    socket.once("secureConnect", () => {
      // A large connection window: the probe never reads slowly on purpose.
      const inc = Buffer.alloc(4);
      inc.writeUInt32BE(1 << 30, 0);
      socket.write(
        Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0), frame(FRAME.WINDOW_UPDATE, 0, 0, inc)]),
      );
    });
    socket.once("error", reject);
    socket.once("close", () => reject(new Error("connection closed before the server's SETTINGS")));
  });
}
