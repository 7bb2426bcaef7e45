// Runtime-level literals for tests: a container spec with nothing but a name and an image (no
// network, user, restart policy, ports, volumes, env, command or limits), and a running container
// as a listing reports it.
import type { ContainerInfo, ContainerSpec } from "../../src/runtime/runtime.ts";

export function bareSpec(name: string, image: string, over: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name,
    image,
    network: "",
    user: "",
    restart: "",
    ports: [],
    volumes: [],
    env: [],
    cmd: [],
    memory: "",
    vcpus: 0,
    ...over,
  };
}

/** A running container in a listing (id = name; no start/creation times, no exit code). */
export function runningInfo(name: string, image: string): ContainerInfo {
  return { id: name, name, image, state: "running", startedAt: null, createdAt: null, exitCode: null };
}
