// Argument shaping of the CLI: multi-word commands joined for cac (joinMultiWord) and
// `svc[/comp]` targets (splitTarget).
import { describe, expect, test } from "bun:test";
import { splitTarget } from "../../../src/roles/cli/context.ts";
import { COMMANDS, candidateCommands, joinMultiWord } from "../../../src/roles/cli/index.ts";
import { CliError } from "../../../src/roles/cli/output.ts";

const names = new Set(COMMANDS.map((c) => c.name));

describe("joinMultiWord", () => {
  test("the command table has multi-word commands to join", () => {
    expect(names.has("node list")).toBe(true);
    expect(names.has("node add")).toBe(true);
  });

  test("joins the first two positional words when they name a command", () => {
    expect(joinMultiWord(["node", "list"], names)).toEqual(["node list"]);
    expect(joinMultiWord(["node", "add", "n1", "10.0.0.5:9444"], names)).toEqual([
      "node add",
      "n1",
      "10.0.0.5:9444",
    ]);
  });

  test("global options before the command are skipped, with their values", () => {
    expect(joinMultiWord(["--json", "node", "list"], names)).toEqual(["--json", "node list"]);
    expect(joinMultiWord(["--config", "x.toml", "node", "remove", "n1"], names)).toEqual([
      "--config",
      "x.toml",
      "node remove",
      "n1",
    ]);
    expect(joinMultiWord(["--config=x.toml", "node", "list"], names)).toEqual([
      "--config=x.toml",
      "node list",
    ]);
  });

  test("leaves everything else alone", () => {
    for (const argv of [
      [],
      ["node"],
      ["deploy", "web"],
      ["deploy", "node", "list"], // only the first two positional words count
      ["list", "node"],
      ["--config", "node", "list"], // "node" is the config value here
      ["--json"],
    ]) {
      expect(joinMultiWord(argv, names)).toEqual(argv);
    }
  });

  test("does not mutate its input", () => {
    const argv = ["node", "list", "--json"];
    joinMultiWord(argv, names);
    expect(argv).toEqual(["node", "list", "--json"]);
  });
});

describe("splitTarget", () => {
  test("service and service/component", () => {
    expect(splitTarget("web")).toEqual({ service: "web" });
    expect(splitTarget("web/api")).toEqual({ service: "web", component: "api" });
    expect(splitTarget("my-svc/my-comp")).toEqual({ service: "my-svc", component: "my-comp" });
  });

  test("bad targets are usage errors (exit 2) naming the target", () => {
    for (const bad of ["/api", "web/", "/", "web/api/x", "a//b"]) {
      let err: unknown;
      try {
        splitTarget(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CliError);
      expect((err as CliError).code).toBe(2);
      expect((err as CliError).message).toBe(
        `bad target "${bad}": expected <service> or <service>/<component>`,
      );
    }
  });
});

describe("candidateCommands", () => {
  test("only the commands named by one of argv's words", () => {
    expect(candidateCommands(["ps", "--json"]).map((c) => c.name)).toEqual(["ps"]);
    expect(candidateCommands(["--config", "ps", "list"]).map((c) => c.name)).toEqual(["list", "ps"]);
    expect(candidateCommands(["node list"]).map((c) => c.name)).toEqual(["node list"]);
  });

  test("none for argv without a command word", () => {
    expect(candidateCommands([])).toEqual([]);
    expect(candidateCommands(["--help"])).toEqual([]);
    expect(candidateCommands(["node", "bogus"])).toEqual([]);
  });
});
