// Alert delivery with real child processes: env passed without a shell, log-only when empty,
// a hanging command (and what it started) killed at the timeout, a missing binary logged.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { type Alert, alertSink, raiseAlert } from "../../../src/monitor/alert.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-alert-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function memoryLogger() {
  const chunks: string[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void chunks.push(s) });
  const lines = () =>
    chunks
      .join("")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, lines };
}

function script(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/bash\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

const alert: Alert = {
  type: "drift",
  service: "web",
  // shell metacharacters must arrive verbatim: nothing is ever interpreted by a shell
  component: "api;$(touch PWNED)`id`",
  desired: "running",
  observed: "exited",
  prev: "running",
  transitions: 1,
};

describe("raiseAlert", () => {
  test("runs argv with the MCP_* environment, exit code logged", async () => {
    const out = join(dir, "env.txt");
    const cmd = script("record.sh", `env | grep '^MCP_' | sort > "$1"; echo note >&2`);
    const log = memoryLogger();
    const r = await raiseAlert(
      { node: "rift", command: [cmd, out], timeoutMs: 5_000, logger: log.logger },
      alert,
    );
    expect(r).toEqual({ ran: true, code: 0, timedOut: false });
    const env = Object.fromEntries(
      readFileSync(out, "utf8")
        .trim()
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    expect(env).toEqual({
      MCP_ALERT_TYPE: "drift",
      MCP_COMPONENT: "api;$(touch PWNED)`id`",
      MCP_DESIRED: "running",
      MCP_NODE: "rift",
      MCP_OBSERVED: "exited",
      MCP_PREV_STATE: "running",
      MCP_SERVICE: "web",
      MCP_TRANSITIONS: "1",
    });
    expect(existsSync(join(process.cwd(), "PWNED"))).toBe(false);
    const ran = log.lines().find((l) => l.msg === "alert command ran");
    expect(ran).toMatchObject({ exit_code: 0, stderr: "note", service: "web", alert_type: "drift" });
  });

  test("empty command: one warn line with the alert's fields, nothing run", async () => {
    const log = memoryLogger();
    const r = await raiseAlert(
      alertSink({
        nodeName: "rift",
        logger: log.logger,
        monitor: { alertCommand: [], alertTimeoutMs: 1_000 },
      }),
      {
        ...alert,
        type: "boot",
        component: "db",
        detail: "stage foundation: tcp 127.0.0.1:5432 not answering",
      },
    );
    expect(r).toEqual({ ran: false, code: null, timedOut: false });
    const lines = log.lines();
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatchObject({
      level: 40,
      alert_type: "boot",
      service: "web",
      component: "db",
      node: "rift",
      desired: "running",
      observed: "exited",
      prev_state: "running",
      transitions: 1,
      detail: "stage foundation: tcp 127.0.0.1:5432 not answering",
    });
  });

  test("a hanging command is killed at the timeout, with the processes it started", async () => {
    const pidFile = join(dir, "child.pid");
    const cmd = script("hang.sh", `sleep 300 & echo $! > "${pidFile}"; wait`);
    const log = memoryLogger();
    const t0 = Date.now();
    const r = await raiseAlert({ node: "n", command: [cmd], timeoutMs: 400, logger: log.logger }, alert);
    const ms = Date.now() - t0;
    expect(r.timedOut).toBe(true);
    expect(r.ran).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(400);
    expect(ms).toBeLessThan(3_000);
    const child = Number(readFileSync(pidFile, "utf8").trim());
    // the backgrounded sleep belonged to the command's process group: it is gone too
    // (dead = gone or a zombie: this machine's PID 1 does not always reap orphans)
    const running = () => {
      try {
        return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${child}/stat`, "utf8"));
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 50 && running(); i++) await Bun.sleep(20);
    expect(running()).toBe(false);
    expect(log.lines().find((l) => l.level === 50)?.error).toBe(
      "alert command timed out after 400 ms and was killed",
    );
  });

  test("a failing command is logged with its exit code and stderr", async () => {
    const cmd = script("fail.sh", "echo 'ntfy: no route to host' >&2; exit 3");
    const log = memoryLogger();
    const r = await raiseAlert({ node: "n", command: [cmd], timeoutMs: 5_000, logger: log.logger }, alert);
    expect(r).toEqual({ ran: true, code: 3, timedOut: false, error: "alert command exited with code 3" });
    expect(log.lines().find((l) => l.level === 50)).toMatchObject({
      exit_code: 3,
      stderr: "ntfy: no route to host",
    });
  });

  test("a missing binary is logged, not thrown", async () => {
    const log = memoryLogger();
    const r = await raiseAlert(
      { node: "n", command: [join(dir, "no-such-notifier")], timeoutMs: 5_000, logger: log.logger },
      alert,
    );
    expect(r.ran).toBe(false);
    expect(r.error).toContain("cannot execute");
    expect(log.lines().find((l) => l.level === 50)?.msg).toBe("alert command failed to start");
  });
});
