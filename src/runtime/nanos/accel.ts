// Which QEMU accelerator `accel = "auto"` picks: KVM only where it is real hardware KVM, TCG otherwise,
// with the reason in one line (for `mcp agent status`). The trap it exists for: a PVM host
// (shared/unikernel/README.md §4) has an openable /dev/kvm from the kvm_pvm module, QEMU starts under it,
// and Nanos dies with "KVM internal error" while QEMU keeps running. The decision is a pure function of
// facts; readAccelFacts gathers them from a machine (a root prefix lets tests use a made-up tree).
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface AccelFacts {
  /** Opening /dev/kvm read-write: "ok", "missing" (ENOENT), or the error code (EACCES, EPERM, ...). */
  kvmDevice: string;
  /** /proc/cpuinfo lists the vmx (Intel) or svm (AMD) flag. */
  cpuVirt: boolean;
  /** Which KVM vendor modules /sys/module shows. */
  modules: { kvmIntel: boolean; kvmAmd: boolean; kvmPvm: boolean };
}

export interface AccelChoice {
  accel: "kvm" | "tcg";
  reason: string;
}

export function detectAccel(f: AccelFacts): AccelChoice {
  const tcg = (reason: string): AccelChoice => ({ accel: "tcg", reason });
  if (f.kvmDevice === "missing") return tcg("no /dev/kvm");
  if (f.kvmDevice !== "ok") {
    return tcg(`/dev/kvm does not open read-write (${f.kvmDevice}); is the agent's user in the kvm group?`);
  }
  const { kvmIntel, kvmAmd, kvmPvm } = f.modules;
  const hw = [kvmIntel && "kvm_intel", kvmAmd && "kvm_amd"].filter((m): m is string => !!m);
  if (hw.length === 0) {
    return tcg(
      kvmPvm
        ? "/dev/kvm is PVM (kvm_pvm loaded, no kvm_intel/kvm_amd): Nanos fails under it with a KVM internal error"
        : "/dev/kvm opens but neither kvm_intel nor kvm_amd is loaded",
    );
  }
  // Only one vendor module can back /dev/kvm; with PVM beside a hardware one we cannot tell which.
  if (kvmPvm) return tcg(`both kvm_pvm and ${hw.join("/")} are loaded: cannot tell which backs /dev/kvm`);
  if (!f.cpuVirt) return tcg(`${hw.join("/")} is loaded but /proc/cpuinfo has no vmx/svm flag`);
  return { accel: "kvm", reason: `/dev/kvm opens read-write, ${hw.join("/")} loaded, CPU has vmx/svm` };
}

/** The facts of the machine under `root` ("/" for the real one). Never throws. */
export function readAccelFacts(root = "/"): AccelFacts {
  let kvmDevice = "ok";
  try {
    closeSync(openSync(join(root, "dev/kvm"), "r+"));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? "error";
    kvmDevice = code === "ENOENT" ? "missing" : code;
  }
  let cpuVirt = false;
  try {
    const info = readFileSync(join(root, "proc/cpuinfo"), "utf8");
    cpuVirt = /^flags\s*:.*\b(vmx|svm)\b/m.test(info);
  } catch {
    // No cpuinfo: treat as no virtualisation flag.
  }
  const mod = (name: string): boolean => existsSync(join(root, "sys/module", name));
  return {
    kvmDevice,
    cpuVirt,
    modules: { kvmIntel: mod("kvm_intel"), kvmAmd: mod("kvm_amd"), kvmPvm: mod("kvm_pvm") },
  };
}
