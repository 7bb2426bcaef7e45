// The local halves of `mcp agent upgrade` / `mcp agent status`: the version stamp read from a
// file's bytes (stamp across a scan-chunk boundary, no stamp, this module's own regex not
// matching), compression once per binary and algorithm with byte-exact round trips through the
// real zstd/gzip tools a node would use, short gRPC errors, and the status row's skew marking.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { NodeStatusResponseSchema } from "../../../src/gen/mcp/v1/mcp_pb.ts";
import { CLI_VERSION, embeddedVersion } from "../../../src/roles/cli/agent-binary.ts";
import { statusRow } from "../../../src/roles/cli/agent-status.ts";
import { briefError, PayloadCache } from "../../../src/roles/cli/agent-upgrade.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-upgrade-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, ...parts: (string | Uint8Array)[]): string {
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat(parts.map((x) => (typeof x === "string" ? Buffer.from(x, "latin1") : x))));
  return p;
}

describe("embeddedVersion", () => {
  test("finds the stamp anywhere, including across the 4 MiB scan-chunk boundary", () => {
    const filler = new Uint8Array(4 * 1024 * 1024 - 5).fill(0x41);
    expect(embeddedVersion(file("edge", filler, "mcp-version:1.2.3-rc.1+g00d;", "tail"))).toBe(
      "1.2.3-rc.1+g00d",
    );
    expect(embeddedVersion(file("start", "mcp-version:v9;rest"))).toBe("v9");
  });

  test("no stamp, an unterminated one, or the scanner's own pattern text: undefined", () => {
    expect(embeddedVersion(file("none", new Uint8Array(1000)))).toBeUndefined();
    expect(embeddedVersion(file("open", "mcp-version:1.2.3"))).toBeUndefined();
    expect(
      embeddedVersion(file("regex", "/mcp-version:([0-9A-Za-z][0-9A-Za-z.+_~-]{0,63});/")),
    ).toBeUndefined();
    expect(embeddedVersion(join(dir, "missing"))).toBeUndefined();
  });
});

describe("PayloadCache", () => {
  const data = Buffer.from("mcp agent binary ".repeat(50_000));
  const bin = file("bin", data);
  const sha = new Bun.CryptoHasher("sha256").update(data).digest("hex");

  for (const algo of ["zstd", "gzip"] as const) {
    test(`${algo}: compressed once, smaller, and the node's ${algo} -d gives back the exact bytes`, async () => {
      const cache = new PayloadCache();
      const [a, b] = await Promise.all([cache.get(bin, algo), cache.get(bin, algo)]);
      expect(a).toBe(b);
      expect(a.size).toBe(data.length);
      expect(a.sha256).toBe(sha);
      expect(a.data.length).toBeLessThan(data.length / 10);
      const p = Bun.spawn([algo, "-d", "-c"], { stdin: a.data, stdout: "pipe", stderr: "pipe" });
      const out = new Uint8Array(await new Response(p.stdout).arrayBuffer());
      expect(await p.exited).toBe(0);
      expect(new Bun.CryptoHasher("sha256").update(out).digest("hex")).toBe(sha);
    });
  }
});

describe("briefError", () => {
  test("grpc-js UNAVAILABLE texts shrink to what the operator acts on", () => {
    expect(
      briefError(
        new Error("UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:4"),
      ),
    ).toBe("connection refused");
    expect(briefError(new Error("DEADLINE_EXCEEDED: Deadline exceeded after 3.001s"))).toBe(
      "no answer in time",
    );
    expect(briefError(new Error(`x${"y".repeat(300)}\nsecond line`)).length).toBe(120);
  });
});

describe("statusRow", () => {
  const node = { name: "n1", address: "127.0.0.1:1", addresses: [], arch: "amd64" as const };
  test("marks skew against this CLI's version, keeps sizes as numbers", () => {
    const value = create(NodeStatusResponseSchema, {
      agentVersion: "0.0.1-old",
      arch: "amd64",
      runtime: "podman",
      runtimes: ["container", "unikernel"],
      diskTotalBytes: 10n,
      diskFreeBytes: 4n,
    });
    const row = statusRow({ node, value });
    expect(row).toMatchObject({
      reachable: true,
      skew: true,
      agentVersion: "0.0.1-old",
      disk: { totalBytes: 10, freeBytes: 4 },
      runtime: "podman",
      runtimes: ["container", "unikernel"],
    });
    expect(
      statusRow({ node, value: create(NodeStatusResponseSchema, { agentVersion: CLI_VERSION }) }).skew,
    ).toBe(false);
  });

  test("an unreachable node is a row with the error, never skew", () => {
    expect(statusRow({ node, error: "UNAVAILABLE: down" })).toEqual({
      name: "n1",
      address: "127.0.0.1:1",
      configArch: "amd64",
      reachable: false,
      error: "UNAVAILABLE: down",
      // A server's own UNAVAILABLE, not the client's connect error: its words, short.
      reason: "UNAVAILABLE: down",
      skew: false,
    });
  });
});
