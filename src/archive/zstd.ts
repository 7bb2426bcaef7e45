// Streaming zstd for snapshot archives, in-process through node:zlib's zstd streams (Bun 1.4
// ships them; measured the output readable by the system `zstd -d`). Both directions take and
// return async iterables of chunks, so an archive flows from disk to the network and back
// without ever being held whole; errors on either side end the iteration with that error.
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import {
  constants,
  createZstdCompress,
  createZstdDecompress,
  type ZstdCompress,
  type ZstdDecompress,
} from "node:zlib";

/** zstd level for snapshots: 3 (the zstd default) keeps a live snapshot cheap on the node. */
export const ZSTD_LEVEL = 3;

async function* through(
  src: AsyncIterable<Uint8Array>,
  z: ZstdCompress | ZstdDecompress,
): AsyncGenerator<Uint8Array> {
  // pipeline() handles backpressure and tears both sides down on an error or an early return.
  const done = pipeline(Readable.from(src, { objectMode: false }), z);
  done.catch(() => {}); // surfaced through the iteration below as well
  try {
    for await (const c of z) yield c as Uint8Array;
    await done;
  } finally {
    if (!z.destroyed) z.destroy();
  }
}

export function zstdCompressStream(
  src: AsyncIterable<Uint8Array>,
  level = ZSTD_LEVEL,
): AsyncGenerator<Uint8Array> {
  return through(src, createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: level } }));
}

export function zstdDecompressStream(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  return through(src, createZstdDecompress());
}

/** Regroups a chunk stream into chunks of about `size` bytes (last one shorter): fewer, fuller messages. */
export async function* rechunk(src: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = [];
  let have = 0;
  for await (const c of src) {
    parts.push(c);
    have += c.length;
    if (have >= size) {
      yield Buffer.concat(parts);
      parts = [];
      have = 0;
    }
  }
  if (have > 0) yield Buffer.concat(parts);
}
