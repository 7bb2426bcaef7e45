// Which argv runs a daemon (src/util/daemon-argv.ts, used by src/main.ts): the daemon word may
// follow the daemon's own options; the agent's CLI verbs stay CLI commands whatever options
// come between.
import { describe, expect, test } from "bun:test";
import { daemonArgv } from "../../../src/util/daemon-argv.ts";

describe("daemonArgv", () => {
  test("mcp agent|master …: the daemon with the rest of argv", () => {
    expect(daemonArgv(["agent"])).toEqual({ role: "agent", args: [] });
    expect(daemonArgv(["agent", "--config", "F"])).toEqual({ role: "agent", args: ["--config", "F"] });
    expect(daemonArgv(["master", "-c", "F"])).toEqual({ role: "master", args: ["-c", "F"] });
    // a bad argument is the daemon's to refuse (exit 2, with a suggestion for a mistyped verb)
    expect(daemonArgv(["agent", "statsu"])).toEqual({ role: "agent", args: ["statsu"] });
    expect(daemonArgv(["agent", "--json"])).toEqual({ role: "agent", args: ["--json"] });
  });

  test("the daemon's options may come before the word", () => {
    expect(daemonArgv(["--config", "F", "agent"])).toEqual({ role: "agent", args: ["--config", "F"] });
    expect(daemonArgv(["--config=F", "--allow-any-addr", "master"])).toEqual({
      role: "master",
      args: ["--config=F", "--allow-any-addr"],
    });
  });

  test("the agent's CLI verbs are CLI commands, options before or between", () => {
    for (const argv of [
      ["agent", "status"],
      ["agent", "--json", "status"],
      ["agent", "--config", "F", "upgrade", "n1"],
      ["--config", "F", "agent", "recover"],
      ["agent", "snapshot", "--keep", "3"],
    ])
      expect(daemonArgv(argv)).toBeNull();
  });

  test("anything else is the CLI", () => {
    for (const argv of [
      [],
      ["ps"],
      ["--json", "agent", "status"],
      ["-n", "agent", "deploy", "x"],
      ["deploy", "agent"],
    ])
      expect(daemonArgv(argv)).toBeNull();
  });
});
