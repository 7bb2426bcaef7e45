// PodmanRuntime against real podman 4.3 (runc), a real busybox image and a real OCI registry: the
// shared runtime cases of test/support/runtime-suite.ts (docker runs the same in runtime-docker).
import { run } from "../../src/runtime/exec.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { busyboxImage, podmanEnv, pushToRegistry } from "../support/env.ts";
import { runtimeSuite } from "../support/runtime-suite.ts";

runtimeSuite("podman", async () => {
  const pe = await podmanEnv();
  const cli = (...sub: string[]) =>
    run(["podman", ...pe.globalArgs, ...sub], { env: pe.env, timeoutMs: 60_000 });
  return {
    rt: new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env }),
    image: await busyboxImage(),
    argvPrefix: ["podman", ...pe.globalArgs],
    cli,
    async push(image, ref) {
      await pushToRegistry(image, ref);
      await cli("rmi", "--force", ref); // the push tagged nothing locally, but be sure
    },
  };
});
