// deploy/ packaging files that need no machine to check: the master example loads with the real
// loader and matches the master unit's paths, the install script is valid bash that installs what
// `mcp node provision` installs (packages, paths, the one unit file), and the NixOS module (no nix
// here) is checked as text: balanced delimiters, the pinned UID, the agent's ExecStart and the
// Debian unit's [Service] settings. Booting the units is test/e2e/packaging.test.ts.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_MASTER_CONFIG_PATH, loadMasterConfig } from "../../../src/config/master.ts";
import { AGENT_BINARY_PATH, PACKAGES, UNIT_PATH } from "../../../src/roles/cli/provision-steps.ts";
import { run } from "../../../src/runtime/exec.ts";
import { REPO_ROOT } from "../../support/binary.ts";

const DEPLOY = join(REPO_ROOT, "deploy");
const read = (p: string) => readFileSync(join(DEPLOY, p), "utf8");

/** key → values of a unit file's section (comments skipped). */
function unitSection(text: string, section: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) cur = m[1]!;
    else if (cur === section) {
      const i = line.indexOf("=");
      out.set(line.slice(0, i), [...(out.get(line.slice(0, i)) ?? []), line.slice(i + 1)]);
    }
  }
  return out;
}

describe("master", () => {
  test("deploy/examples/mcp-master.toml loads with the real loader, no warnings", () => {
    const { config, warnings } = loadMasterConfig(join(DEPLOY, "examples", "mcp-master.toml"));
    expect(warnings).toEqual([]);
    expect(config.auth.mode).toBe("mcias");
    expect(config.mcias?.service_name).toBe("mcp-master");
    expect(config.database.path).toBe("/srv/mcp-master/master.db");
    expect(config.nodes.map((n) => [n.name, n.role])).toEqual([
      ["rift", "master"],
      ["svc", "edge"],
    ]);
    expect(config.snapshots?.dir).toBe("/srv/mcp-master/snapshots");
  });

  test("mcp-master.service runs the master binary on the default config path, hardened", () => {
    const svc = unitSection(read("systemd/mcp-master.service"), "Service");
    expect(svc.get("ExecStart")).toEqual([
      `/srv/mcp-master/mcp-master server --config ${DEFAULT_MASTER_CONFIG_PATH}`,
    ]);
    expect(svc.get("User")).toEqual(["mcp"]);
    expect(svc.get("ReadWritePaths")).toEqual(["/srv/mcp-master"]);
    for (const k of [
      "NoNewPrivileges",
      "ProtectHome",
      "PrivateDevices",
      "RestrictNamespaces",
      "RestrictSUIDSGID",
    ])
      expect(svc.get(k)).toEqual(["true"]);
    expect(svc.get("ProtectSystem")).toEqual(["strict"]);
  });
});

describe("install-debian.sh", () => {
  const script = read("install-debian.sh");

  test("is valid bash with strict mode", async () => {
    const r = await run(["bash", "-n", join(DEPLOY, "install-debian.sh")], { timeoutMs: 10_000 });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(script).toContain("set -euo pipefail");
  });

  test("installs what provision installs, from the unit file provision embeds", () => {
    const pk = /^PACKAGES=\(([^)]*)\)$/m.exec(script);
    expect(pk?.[1]?.split(" ").sort()).toEqual([...PACKAGES].sort());
    expect(script).toContain("UNIT_SRC=$HERE/systemd/mcp-agent.service");
    expect(script).toContain(`UNIT_PATH=${UNIT_PATH}`);
    expect(script).toContain("AGENT_BIN=$MCP_HOME/mcp-agent");
    expect(AGENT_BINARY_PATH).toBe("/srv/mcp/mcp-agent");
    expect(script).toContain("MCP_UID=850");
    const provision = readFileSync(join(REPO_ROOT, "src", "roles", "cli", "provision.ts"), "utf8");
    expect(provision).toContain('from "../../../deploy/systemd/mcp-agent.service" with { type: "text" }');
  });

  test("never writes, chowns or chmods by name below /srv as root (issue 16; behaviour: e2e)", () => {
    // Directories: a cd -P walk, owner and mode set on "." only.
    expect(script).toContain('cd -P -- "$c"');
    expect(script).toContain('chown -h -- "$2:$3" .');
    // The binary: written by the mcp user to a noclobber temp name, renamed with mv -T.
    expect(script).toContain('AS_MCP=(setpriv "--reuid=$MCP_UID" "--regid=$MCP_UID" --init-groups --)');
    expect(script).toContain('set -C; cat > "$tmp"; chmod -- "$mode" "$tmp"; mv -fT -- "$tmp" "$p"');
    expect(script).not.toContain('put "$BINARY"');
    const chmods = script.split("\n").filter((l) => /\bchmod\b.*\$AGENT_BIN/.test(l));
    expect(chmods.length).toBe(1);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash array expansion, not a JS template
    expect(chmods.every((l) => l.includes('"${AS_MCP[@]}" chmod'))).toBe(true);
  });
});

describe("deploy/nixos/mcp.nix (text checks: no nix on this machine)", () => {
  const nix = read("nixos/mcp.nix");

  test("delimiters balance outside strings and comments", () => {
    const stack: string[] = [];
    const pairs: Record<string, string> = { "}": "{", "]": "[", ")": "(" };
    let inStr = false;
    for (const line of nix.split("\n")) {
      for (let i = 0; i < line.length; i++) {
        const c = line[i]!;
        if (!inStr && c === "#") break;
        if (c === '"' && line[i - 1] !== "\\") inStr = !inStr;
        else if (inStr) continue;
        else if ("{[(".includes(c)) stack.push(c);
        else if (c in pairs) expect(stack.pop()).toBe(pairs[c]!);
      }
      expect(inStr).toBe(false);
    }
    expect(stack).toEqual([]);
  });

  test("pinned uid, subids, podman, and the Debian unit's agent settings", () => {
    expect(nix).toMatch(/uid = lib\.mkOption \{\s*type = lib\.types\.int;\s*default = 850;/);
    expect(nix).toContain("uid = cfg.uid;");
    expect(nix).toContain("users.groups.mcp.gid = cfg.uid;");
    expect(nix).toContain("subUidRanges");
    expect(nix).toContain("subGidRanges");
    expect(nix).toContain("virtualisation.podman.enable = true;");
    expect(nix).toContain('default = "/srv/mcp/mcp-agent";');
    expect(nix).toContain('default = "/srv/mcp/mcp-agent.toml";');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: Nix interpolation.
    expect(nix).toContain('ExecStart = "${cfg.binary} server --config ${cfg.configFile}";');
    const svc = unitSection(read("systemd/mcp-agent.service"), "Service");
    expect(svc.get("ExecStart")).toEqual(["/srv/mcp/mcp-agent server --config /srv/mcp/mcp-agent.toml"]);
    for (const [k, [v]] of svc) {
      if (k === "ExecStart") continue;
      if (k === "ReadWritePaths") {
        expect(nix).toContain(
          `ReadWritePaths = [ ${v!
            .split(" ")
            .map((p) => `"${p}"`)
            .join(" ")} ];`,
        );
        continue;
      }
      const nixValue = v === "true" ? "true" : /^\d+$/.test(v!) ? v : `"${v}"`;
      expect(nix).toContain(`${k} = ${nixValue};`);
    }
  });
});
