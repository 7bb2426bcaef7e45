// What a unikernel component may declare: one set of rules, used by the definition schema (so a
// file is refused at validation with the key that is wrong) and by the unikernel runtime (so a
// spec from anywhere else — the registry, a recover — is refused the same way before anything is
// created). A field that a Nanos VM cannot honour is refused, never ignored.
import { parseMemorySize, parsePortSpec, parseVolumeSpec } from "./specs.ts";

/** Below this Nanos does not come up (shared/unikernel/README.md §2: 32M booted and served). */
export const MIN_VM_MEMORY_MIB = 32;
/** Memory a VM gets when the component sets none. */
export const DEFAULT_VM_MEMORY = "64m";

/** The fields of a unikernel component the rules look at. */
export interface UnikernelFields {
  memory: string;
  user: string;
  network: string;
  ports: readonly string[];
  volumes: readonly string[];
  restart: string;
  /** The health check's type, when there is one. */
  health?: string;
}

export interface UnikernelProblem {
  /** The component key that is wrong. */
  key: keyof UnikernelFields;
  message: string;
}

/** The VM's memory in MiB ("" = DEFAULT_VM_MEMORY). */
export function vmMemoryMiB(memory: string): number {
  return Math.floor(parseMemorySize(memory === "" ? DEFAULT_VM_MEMORY : memory) / 1024 ** 2);
}

/** Every rule a unikernel component breaks, each naming its key; [] when it can run as a VM. */
export function unikernelProblems(c: UnikernelFields): UnikernelProblem[] {
  const out: UnikernelProblem[] = [];
  const add = (key: keyof UnikernelFields, message: string) => out.push({ key, message });
  try {
    if (vmMemoryMiB(c.memory) < MIN_VM_MEMORY_MIB)
      add("memory", `${c.memory} is below the ${MIN_VM_MEMORY_MIB} MiB a Nanos VM needs`);
  } catch (e) {
    add("memory", (e as Error).message);
  }
  if (c.user !== "") add("user", "cannot be set for a unikernel (a Nanos VM has no users)");
  const net = c.network === "" ? "none" : c.network;
  if (net !== "user" && net !== "none")
    add("network", `${JSON.stringify(c.network)} is not available to a unikernel (use "user" or "none")`);
  else if (net === "none" && c.ports.length > 0)
    add("ports", 'need network = "user" for a unikernel (with network "none" it has no network)');
  for (const p of c.ports) {
    try {
      const ps = parsePortSpec(p);
      if (ps.hostIp?.includes(":"))
        add("ports", `${p}: QEMU user networking forwards IPv4 host addresses only`);
    } catch (e) {
      add("ports", (e as Error).message);
    }
  }
  for (const v of c.volumes) {
    try {
      const vs = parseVolumeSpec(v);
      if (vs.kind !== "bind")
        add(
          "volumes",
          `${v}: a unikernel bakes host directories into its image; a named volume cannot be baked`,
        );
      const segs = vs.target.split("/").filter((s) => s !== "");
      if (segs.length === 0)
        add("volumes", `${v}: target "/" would replace the image's whole filesystem; bake below it`);
      else if (segs.some((s) => s === "." || s === ".."))
        add("volumes", `${v}: target has a "." or ".." segment; name the guest path plainly`);
      const bad = vs.options.filter((o) => o !== "ro");
      if (bad.length > 0)
        add(
          "volumes",
          `${v}: option ${bad.join(",")} has no meaning for a baked copy (only "ro"; writes inside the VM never reach the host)`,
        );
    } catch (e) {
      add("volumes", (e as Error).message);
    }
  }
  if (c.health === "exec")
    add("health", 'an exec health check cannot run in a unikernel (no exec); use type = "http" or "tcp"');
  return out;
}
