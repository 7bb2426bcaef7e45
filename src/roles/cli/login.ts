// `mcp login`: MCIAS login (password read with echo off, or from [auth] password_file for
// unattended use); the token is stored 0600 at [auth] token_path.
import { readFileSync } from "node:fs";
import { MciasClient } from "../../auth/mcias.ts";
import { writeTokenFile } from "../../auth/token-file.ts";
import type { CliConfig } from "../../config/cli.ts";
import { loadCtx } from "./context.ts";
import { CliError, printJson } from "./output.ts";

function client(config: CliConfig): MciasClient {
  if (!config.mcias) throw new CliError("no [mcias] section in the CLI config: login needs server_url", 2);
  return new MciasClient({
    serverUrl: config.mcias.server_url,
    caCertPath: config.mcias.ca_cert || undefined,
    serviceName: config.mcias.service_name,
    insecureHttp: config.mcias.insecure_http === true,
  });
}

/** Reads a line from the terminal without echo; from piped stdin when there is no TTY. */
export async function readSecret(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString("utf8").split("\n")[0] ?? "";
  }
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let buf = "";
    const onData = (d: Buffer) => {
      for (const ch of d.toString("utf8")) {
        if (ch === "\r" || ch === "\n") {
          done();
          resolve(buf);
          return;
        }
        if (ch === "\u0003") {
          done();
          reject(new CliError("login cancelled", 130));
          return;
        }
        if (ch === "\u007f" || ch === "\b") buf = buf.slice(0, -1);
        else buf += ch;
      }
    };
    const done = () => {
      stdin.off("data", onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write("\n");
    };
    stdin.on("data", onData);
  });
}

async function readLine(prompt: string): Promise<string> {
  process.stderr.write(prompt);
  for await (const line of console) return String(line).trim();
  return "";
}

/** Unattended login with [auth] username + password_file; stores and returns the token. */
export async function systemLogin(config: CliConfig): Promise<string> {
  const password = readFileSync(config.auth.password_file!, "utf8").trim();
  const { token } = await client(config).login(config.auth.username!, password);
  await writeTokenFile(config.auth.token_path, token);
  return token;
}

export async function loginCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  const mcias = client(ctx.config);
  let username = (opts.username as string | undefined) ?? ctx.config.auth.username;
  let password: string;
  if (!opts.username && ctx.config.auth.username && ctx.config.auth.password_file) {
    password = readFileSync(ctx.config.auth.password_file, "utf8").trim();
  } else {
    username ??= await readLine("username: ");
    password = await readSecret(`password for ${username}: `);
  }
  if (!username) throw new CliError("login: a username is required", 2);
  const { token, expiresAt } = await mcias.login(username, password);
  await writeTokenFile(ctx.config.auth.token_path, token);
  if (ctx.json) printJson({ username, tokenPath: ctx.config.auth.token_path, expiresAt });
  else process.stdout.write(`logged in as ${username}; token stored in ${ctx.config.auth.token_path}\n`);
  return 0;
}
