// The node's container engine as the unikernel runtime's image source: pulls and presence through
// the container runtime (same registry, credentials and pull policy as containers), the image's
// configuration and filesystem through the engine's CLI (oci.ts; no container ever runs).
import type { Runtime } from "../runtime.ts";
import type { ImageSource } from "../unikernel.ts";
import { type EngineCli, exportRootfs, imageConfig } from "./oci.ts";

export function engineImageSource(containers: Runtime, cli: EngineCli): ImageSource {
  return {
    pull: (image) => containers.pull(image),
    imageExists: (image) => containers.imageExists(image),
    config: (image) => imageConfig(cli, image),
    async exportRootfs(image, dest) {
      await exportRootfs(cli, image, dest);
    },
  };
}
