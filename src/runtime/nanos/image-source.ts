// The node's container engine as the unikernel runtime's image source: pulls and presence through
// the container runtime (same registry, credentials and pull policy as containers), the image's
// configuration and filesystem through the engine's CLI (oci.ts; no container ever runs).
import type { Runtime } from "../runtime.ts";
import type { ImageSource } from "../unikernel.ts";
import { type EngineCli, exportRootfs, imageConfig, OciError, parseImageConfig } from "./oci.ts";

/** The container runtime, and what podman's REST service adds (image inspect without a process). */
type Containers = Runtime & { imageInspectViaApi?(image: string): Promise<unknown | null | undefined> };

export function engineImageSource(containers: Containers, cli: EngineCli): ImageSource {
  return {
    pull: (image) => containers.pull(image),
    imageExists: (image) => containers.imageExists(image),
    async config(image) {
      const viaApi = await containers.imageInspectViaApi?.(image);
      if (viaApi === null)
        throw new OciError(`image ${image} is not in the node's ${cli.engine} image store (pull it first)`);
      if (viaApi !== undefined) return parseImageConfig(JSON.stringify([viaApi]), image);
      return imageConfig(cli, image);
    },
    async exportRootfs(image, dest) {
      await exportRootfs(cli, image, dest);
    },
  };
}
