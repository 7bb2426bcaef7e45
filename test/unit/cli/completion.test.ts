// `mcp completion bash|zsh`: the scripts are generated from COMMANDS, so they are tested by
// running them in the real shells: bash sources the script and its _mcp function completes
// command words, subcommands of multi-word commands and each command's options; zsh parses the
// script, registers it with compinit, and (with the completion-system builtins stubbed to print
// what they are given) offers the same words.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bashCompletion, completionCommand, zshCompletion } from "../../../src/roles/cli/completion.ts";
import { COMMANDS } from "../../../src/roles/cli/index.ts";
import { CliError } from "../../../src/roles/cli/output.ts";
import { run } from "../../../src/runtime/exec.ts";

const tmp = mkdtempSync(join(tmpdir(), "mcp-completion-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const bashFile = join(tmp, "mcp.bash");
const zshFile = join(tmp, "_mcp");
writeFileSync(bashFile, bashCompletion());
writeFileSync(zshFile, zshCompletion());

/** COMPREPLY of _mcp for the given words, the last one being completed. */
async function bashComplete(...words: string[]): Promise<string[]> {
  const script = `source "$1" || exit 9; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _mcp; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = await run(["bash", "-c", script, "bash", bashFile, "mcp", ...words], { timeoutMs: 10_000 });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return r.stdout.split("\n").filter((l) => l !== "");
}

async function zshComplete(...words: string[]): Promise<string[]> {
  const script = [
    'compdef() { :; }; source "$1" || exit 9; shift',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: zsh parameter expansion.
    "_describe() { local a=${@[-1]}; print -rl -- ${(P)a} }",
    'compadd() { shift; print -rl -- "$@" }',
    "_files() { print -- '<files>' }",
    'words=(mcp "$@"); CURRENT=$(( $# + 1 )); _mcp',
  ].join("\n");
  const r = await run(["zsh", "-f", "-c", script, "zsh", zshFile, ...words], { timeoutMs: 10_000 });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return r.stdout.split("\n").filter((l) => l !== "");
}

describe("bash completion", () => {
  test("command words, from the table", async () => {
    expect(await bashComplete("de")).toEqual(["deploy"]);
    const all = await bashComplete("");
    for (const c of COMMANDS) expect(all).toContain(c.name.split(" ")[0]!);
    expect(all).toContain("completion");
  });

  test("subcommands of multi-word commands, and options after them", async () => {
    expect(await bashComplete("node", "")).toEqual(["list", "add", "remove", "provision"]);
    expect(await bashComplete("agent", "re")).toEqual(["recover"]);
    expect(await bashComplete("node", "provision", "--u")).toEqual(["--uid"]);
    expect(await bashComplete("service", "export", "--")).toContain("--file");
  });

  test("options of a command include the global ones; --config's value is skipped", async () => {
    expect(await bashComplete("deploy", "--d")).toEqual(["--dry-run", "--direct"]);
    expect(await bashComplete("--config", "x.toml", "st")).toEqual(["stop", "start", "status"]);
    expect(await bashComplete("-")).toContain("--version");
  });
});

describe("zsh completion", () => {
  test("parses and registers with compinit", async () => {
    const r = await run(
      [
        "zsh",
        "-f",
        "-c",
        'autoload -U compinit; compinit -u -D; source "$1"; print -r -- $_comps[mcp]',
        "zsh",
        zshFile,
      ],
      { timeoutMs: 10_000 },
    );
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe("_mcp");
  });

  test("command words with help, subcommands, options", async () => {
    const top = await zshComplete("");
    expect(top).toContain("deploy:Deploy a service (or <service>/<component>) from its definition");
    expect(top.some((l) => l.startsWith("node:"))).toBe(true);
    const sub = await zshComplete("route", "");
    expect(sub.map((l) => l.split(":")[0])).toEqual(["list", "add", "remove"]);
    expect(await zshComplete("logs", "-")).toContain("--follow");
    expect(await zshComplete("push", "x")).toEqual(["<files>"]);
  });
});

test("an unknown shell is one clear usage error", async () => {
  await expect(completionCommand(["fish"])).rejects.toThrow(CliError);
  await expect(completionCommand(["fish"])).rejects.toThrow('expected a shell: bash | zsh, got "fish"');
});
