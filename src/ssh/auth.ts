// Client authentication plan: which keys to offer, in OpenSSH's order. ssh-agent first (when
// SSH_AUTH_SOCK or an explicit socket exists), then identity files: the ssh_config IdentityFile
// entries, or else the default ~/.ssh/id_ed25519, id_ecdsa, id_rsa that exist. An encrypted key
// cannot be used without a prompt, so it is skipped with a note (load it into ssh-agent instead).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type AuthMethod, utils } from "ssh2";

export interface AuthPlan {
  methods: AuthMethod[];
  /** What is offered, for the "authentication failed" message (`ssh-agent`, key paths). */
  offered: string[];
  /** Keys that were skipped and why. */
  notes: string[];
}

export interface AuthOptions {
  user: string;
  home: string;
  /** Explicit identity files (ssh_config IdentityFile or the caller's); empty = the defaults. */
  identityFiles: readonly string[];
  /** Agent socket; undefined = $SSH_AUTH_SOCK; null = no agent. */
  agentSocket?: string | null;
}

const DEFAULT_KEYS = ["id_ed25519", "id_ecdsa", "id_rsa"];

export function planAuth(opts: AuthOptions): AuthPlan {
  const plan: AuthPlan = { methods: [], offered: [], notes: [] };
  const sock = opts.agentSocket === undefined ? process.env["SSH_AUTH_SOCK"] : opts.agentSocket;
  if (sock) {
    if (existsSync(sock)) {
      plan.methods.push({ type: "agent", username: opts.user, agent: sock });
      plan.offered.push("ssh-agent");
    } else {
      plan.notes.push(`ssh-agent socket ${sock} does not exist`);
    }
  }
  const explicit = opts.identityFiles.length > 0;
  const files = explicit ? opts.identityFiles : DEFAULT_KEYS.map((k) => join(opts.home, ".ssh", k));
  for (const file of files) {
    if (!existsSync(file)) {
      if (explicit) plan.notes.push(`identity file ${file} does not exist`);
      continue;
    }
    let parsed: ReturnType<typeof utils.parseKey>;
    try {
      parsed = utils.parseKey(readFileSync(file));
    } catch (e) {
      plan.notes.push(`skipped ${file}: ${(e as Error).message}`);
      continue;
    }
    if (parsed instanceof Error) {
      plan.notes.push(
        /passphrase/i.test(parsed.message)
          ? `skipped ${file}: it is encrypted and there is no passphrase prompt (add it to ssh-agent)`
          : `skipped ${file}: ${parsed.message}`,
      );
      continue;
    }
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (!key?.isPrivateKey()) {
      plan.notes.push(`skipped ${file}: not a private key`);
      continue;
    }
    plan.methods.push({ type: "publickey", username: opts.user, key });
    plan.offered.push(file);
  }
  return plan;
}
