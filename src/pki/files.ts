// Atomic file writes with an exact mode. Used for certificates, private keys
// and token files: a reader never sees a half-written file, and the final
// mode is exactly what we ask for (umask and an older, wider file are both
// overridden because rename replaces the inode).

import { randomBytes } from "node:crypto";
import { chmod, mkdir, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${basename(path)}.tmp-${randomBytes(6).toString("hex")}`);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    // "wx": never follow or reuse an existing file at the temp path.
    fh = await open(tmp, "wx", mode);
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await chmod(tmp, mode); // open()'s mode is filtered by umask
    await rename(tmp, path);
  } catch (err) {
    await fh?.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw err;
  }
  // Best effort: persist the rename itself.
  const dh = await open(dir, "r").catch(() => undefined);
  await dh
    ?.sync()
    .catch(() => {})
    .finally(() => dh.close());
}
