// The CLI's bearer token: read/write the token file (always 0600, §9) and
// pick the token to use (§3.1 precedence: MCP_TOKEN, token file, login).

import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../pki/files.ts";
import { AuthError } from "./identity.ts";

/** The token in the file, or undefined when the file is missing or empty. */
export async function readTokenFile(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Error(`cannot read token file ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const token = text.trim();
  return token === "" ? undefined : token;
}

/** Atomic replace; the result is 0600 even if an older file had a wider mode. */
export async function writeTokenFile(path: string, token: string): Promise<void> {
  if (token === "" || /\s/.test(token))
    throw new Error("refusing to write an empty or whitespace-containing token");
  await writeFileAtomic(path, `${token}\n`, 0o600);
}

export interface ResolveTokenOptions {
  /** Default process.env.MCP_TOKEN; an empty string counts as unset. */
  envToken?: string;
  tokenPath?: string;
  /** System-account login on demand; persisting its token is the caller's choice. */
  login?: () => Promise<string>;
}

export async function resolveToken({
  envToken = process.env.MCP_TOKEN,
  tokenPath,
  login,
}: ResolveTokenOptions): Promise<string> {
  const env = envToken?.trim();
  if (env) return env;
  if (tokenPath) {
    const t = await readTokenFile(tokenPath);
    if (t) return t;
  }
  if (login) return login();
  throw new AuthError(
    "unauthenticated",
    "no token: set MCP_TOKEN, run `mcp login`, or configure [auth] username and password_file",
  );
}
