// The config reference pages are generated from the zod schemas (scripts/gen-config-docs.ts):
// rendering them again must give the committed files byte for byte, so a schema change without
// `npm run docs` fails here. Also checks the renderer sees what the loaders enforce.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { README, REFERENCE_DIR, renderAll, renderReadme } from "../../../scripts/gen-config-docs.ts";
import { COMMANDS } from "../../../src/roles/cli/index.ts";
import { EXIT_CODES_HELP } from "../../../src/roles/cli/output.ts";

const pages = renderAll();

describe("generated config reference", () => {
  test("covers the four config files", () => {
    expect(Object.keys(pages).sort()).toEqual([
      "agent-config.md",
      "cli-config.md",
      "master-config.md",
      "service-config.md",
    ]);
  });

  for (const [name, text] of Object.entries(pages)) {
    test(`docs/reference/${name} is up to date (run npm run docs)`, () => {
      expect(readFileSync(join(REFERENCE_DIR, name), "utf8")).toBe(text);
    });
  }

  test("README's command table is the COMMANDS table, its exit codes EXIT_CODES_HELP (run npm run docs)", () => {
    const readme = readFileSync(README, "utf8");
    expect(renderReadme(readme)).toBe(readme);
    for (const c of COMMANDS) expect(readme).toContain(`| \`mcp ${c.name}`);
    for (const [code, meaning] of EXIT_CODES_HELP) expect(readme).toContain(`| ${code} | ${meaning} |`);
  });

  test("rows carry key paths, types, defaults and enums from the schemas", () => {
    const agent = pages["agent-config.md"]!;
    expect(agent.split("\n")[0]).toContain("do not edit");
    expect(agent).toContain('| `server.grpc_addr` | "host:port" | yes |');
    expect(agent).toContain('| `agent.pull` | "always" \\| "missing" \\| "never" | no | `"always"` |');
    expect(agent).toContain("| `monitor.interval` | duration");
    // A function default is named, never this machine's hostname.
    expect(agent).toContain("| `agent.node_name` | string | no | `the short hostname` |");
    const svc = pages["service-config.md"]!;
    expect(svc).toContain("| `components[].routes[].port` | number | yes |");
    expect(svc).toContain("| `components[].health.interval` | duration");
    expect(pages["master-config.md"]).toContain("| `registration.max_nodes` | number | no | `16` |");
    expect(pages["cli-config.md"]).toContain('| `nodes[].arch` | "amd64" \\| "arm64" | no | `"amd64"` |');
  });
});
