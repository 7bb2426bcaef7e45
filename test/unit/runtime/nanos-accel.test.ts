// QEMU accelerator detection for `accel = "auto"` (src/runtime/nanos/accel.ts): the decision over a table
// of facts (real KVM, PVM, no device, no permission, inconsistent modules), the facts reader over made-up
// trees, and this machine, which must come out TCG (PVM or no /dev/kvm, shared/unikernel/README.md §4).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AccelFacts, detectAccel, readAccelFacts } from "../../../src/runtime/nanos/accel.ts";

const facts = (p: Partial<AccelFacts> & { mods?: Partial<AccelFacts["modules"]> }): AccelFacts => ({
  kvmDevice: p.kvmDevice ?? "ok",
  cpuVirt: p.cpuVirt ?? true,
  modules: { kvmIntel: false, kvmAmd: false, kvmPvm: false, ...p.mods },
});

describe("detectAccel", () => {
  const table: [string, AccelFacts, "kvm" | "tcg", RegExp][] = [
    ["Intel KVM", facts({ mods: { kvmIntel: true } }), "kvm", /kvm_intel loaded/],
    ["AMD KVM", facts({ mods: { kvmAmd: true } }), "kvm", /kvm_amd loaded/],
    ["PVM only (this machine kind)", facts({ cpuVirt: false, mods: { kvmPvm: true } }), "tcg", /PVM/],
    ["no /dev/kvm", facts({ kvmDevice: "missing", mods: { kvmIntel: true } }), "tcg", /^no \/dev\/kvm$/],
    [
      "no /dev/kvm on a PVM host",
      facts({ kvmDevice: "missing", mods: { kvmPvm: true } }),
      "tcg",
      /no \/dev\/kvm/,
    ],
    [
      "not in the kvm group",
      facts({ kvmDevice: "EACCES", mods: { kvmIntel: true } }),
      "tcg",
      /EACCES.*kvm group/,
    ],
    ["no vendor module at all", facts({}), "tcg", /neither kvm_intel nor kvm_amd/],
    ["PVM beside kvm_intel", facts({ mods: { kvmIntel: true, kvmPvm: true } }), "tcg", /cannot tell/],
    ["kvm_amd without the svm flag", facts({ cpuVirt: false, mods: { kvmAmd: true } }), "tcg", /no vmx\/svm/],
  ];
  for (const [name, f, accel, reason] of table) {
    test(name, () => {
      const c = detectAccel(f);
      expect(c.accel).toBe(accel);
      expect(c.reason).toMatch(reason);
      expect(c.reason).not.toContain("\n");
    });
  }
});

describe("readAccelFacts", () => {
  const roots: string[] = [];
  afterAll(() => {
    for (const r of roots) rmSync(r, { recursive: true, force: true });
  });
  const tree = (files: Record<string, string>): string => {
    const root = mkdtempSync(join(tmpdir(), "mcp-accel-"));
    roots.push(root);
    for (const [p, content] of Object.entries(files)) {
      mkdirSync(join(root, p, ".."), { recursive: true });
      writeFileSync(join(root, p), content);
    }
    return root;
  };

  test("a PVM-like tree: device present, no vmx, kvm and kvm_pvm modules", () => {
    const root = tree({
      "dev/kvm": "",
      "proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu sse2 avx hypervisor\n",
      "sys/module/kvm/x": "",
      "sys/module/kvm_pvm/x": "",
    });
    expect(readAccelFacts(root)).toEqual({
      kvmDevice: "ok",
      cpuVirt: false,
      modules: { kvmIntel: false, kvmAmd: false, kvmPvm: true },
    });
  });

  test("an Intel KVM tree: vmx flag and kvm_intel", () => {
    const root = tree({
      "dev/kvm": "",
      "proc/cpuinfo": "flags\t\t: fpu vmx sse2\n",
      "sys/module/kvm_intel/x": "",
    });
    const f = readAccelFacts(root);
    expect(f).toEqual({
      kvmDevice: "ok",
      cpuVirt: true,
      modules: { kvmIntel: true, kvmAmd: false, kvmPvm: false },
    });
    expect(detectAccel(f).accel).toBe("kvm");
  });

  test("vmx only in another field does not count; a missing device and cpuinfo read as absent", () => {
    const root = tree({ "proc/cpuinfo": "model name\t: vmx-like\nflags\t\t: fpu\n" });
    expect(readAccelFacts(root).cpuVirt).toBe(false);
    expect(readAccelFacts(root).kvmDevice).toBe("missing");
    expect(readAccelFacts(join(root, "nowhere")).cpuVirt).toBe(false);
  });

  test("a device that does not open read-write reads as its error code (root too: a directory)", () => {
    const root = tree({ "dev/kvm/x": "" });
    expect(readAccelFacts(root).kvmDevice).toBe("EISDIR");
  });
});

describe("this machine", () => {
  test("auto picks TCG here (PVM or no /dev/kvm), with its reason", () => {
    const f = readAccelFacts();
    const c = detectAccel(f);
    console.log(`accel auto on this machine: ${c.accel} (${c.reason}); facts ${JSON.stringify(f)}`);
    expect(c.accel).toBe("tcg");
  });
});
