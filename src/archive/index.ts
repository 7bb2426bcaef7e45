// tar.zst archives of a directory tree: the pieces snapshots and migration stream through.
import {
  type ExtractOptions,
  type ExtractResult,
  type ExtractSink,
  extractTar,
  type PackEntry,
  packTar,
} from "./tar.ts";
import { rechunk, zstdCompressStream, zstdDecompressStream } from "./zstd.ts";

export {
  collectTree,
  EXTRACT_MODE_MASK,
  type ExtractResult,
  type ExtractSink,
  type PackEntry,
  safeRelPath,
  TarError,
  TarLimitError,
} from "./tar.ts";

/** Chunk size of the compressed stream (well under the 16 MiB gRPC message limit). */
export const ARCHIVE_CHUNK = 512 * 1024;

/** A tar.zst of `entries`, as chunks of about ARCHIVE_CHUNK bytes. */
export function packTarZst(
  entries: Iterable<PackEntry> | AsyncIterable<PackEntry>,
): AsyncGenerator<Uint8Array> {
  return rechunk(zstdCompressStream(packTar(entries)), ARCHIVE_CHUNK);
}

/** Extracts a tar.zst chunk stream into `dest` (see extractTar for the confinement rules). */
export function extractTarZst(
  src: AsyncIterable<Uint8Array>,
  dest: string | ExtractSink,
  opts?: ExtractOptions,
): Promise<ExtractResult> {
  return extractTar(zstdDecompressStream(src), dest, opts);
}
