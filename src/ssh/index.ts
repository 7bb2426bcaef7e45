// The SSH layer's public surface (agent upgrade and node provision import from here).
export { type AuthPlan, planAuth } from "./auth.ts";
export { SshError } from "./errors.ts";
export {
  appendKnownHost,
  checkHostKey,
  entryMatchesHost,
  fingerprintSha256,
  type HostKeyCheck,
  hostKeyProblem,
  type KnownHostEntry,
  keyTypeLabel,
  keyTypeOfBlob,
  knownHostsName,
  parseKnownHosts,
  readKnownHosts,
} from "./known-hosts.ts";
export { quoteArg, quoteArgv, withSudo } from "./quote.ts";
export {
  type ConnectOptions,
  connectSsh,
  type ExecOptions,
  type ExecResult,
  type RemoteStat,
  SshSession,
  type UploadOptions,
} from "./session.ts";
export { parseSpec, type ResolveOptions, resolveTarget, type SshTarget } from "./target.ts";
