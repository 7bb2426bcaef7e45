// Config sections shared by the agent and master daemon configs: the gRPC
// server, local/MCIAS auth, MCIAS client settings and logging. Parsed
// objects keep the TOML's snake_case key names so code reads like the file.

import { z } from "zod";
import { unlistableOperator } from "../auth/identity.ts";
import { checkHttpsUnlessInsecure, hostPortString, insecureHttp, tomlDateString, urlString } from "./load.ts";

export const serverSection = z.strictObject({
  /** Overlay address to bind, "host:port". */
  grpc_addr: hostPortString.describe("overlay address to bind; 0.0.0.0 / :: only with allow_any_addr"),
  tls_cert: z.string().min(1).describe("PEM certificate (full chain) the gRPC server presents"),
  tls_key: z.string().min(1).describe("PEM private key of tls_cert"),
  /** Binding 0.0.0.0 / :: is refused unless this (or --allow-any-addr) is set. */
  allow_any_addr: z.boolean().default(false).describe("permit binding every interface"),
});

const localToken = z.strictObject({
  name: z.string().min(1),
  role: z.enum(["admin", "user", "guest"]),
  account_type: z.enum(["human", "system"]).default("human"),
  /** Hex SHA-256 of the bearer token; the token itself is never stored here. */
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, { error: "expected 64 hex characters (SHA-256 of the token)" })
    .transform((s) => s.toLowerCase())
    .describe("hex SHA-256 of the bearer token (the token itself is never stored)"),
  /** ISO 8601 (a TOML datetime or a string); absent = never expires. */
  expires: z
    .preprocess(
      tomlDateString,
      z.string().check((ctx) => {
        if (Number.isNaN(Date.parse(ctx.value))) {
          ctx.issues.push({
            code: "custom",
            message: `expected an ISO 8601 date, got ${JSON.stringify(ctx.value)}`,
            input: ctx.value,
          });
        }
      }),
    )
    .optional(),
});

export const authSection = z
  .strictObject({
    mode: z
      .enum(["mcias", "local"])
      .default("mcias")
      .describe("who validates bearer tokens: MCIAS or [[auth.tokens]]"),
    tokens: z.array(localToken).default([]),
    /**
     * System accounts that may operate (SPEC §5.2); humans need the user or admin role. Nodes'
     * identities (agent-<node>) and the master's may not be listed.
     */
    operators: z
      .array(
        z
          .string()
          .min(1)
          .check((ctx) => {
            const why = unlistableOperator(ctx.value);
            if (why) ctx.issues.push({ code: "custom", message: why, input: ctx.value });
          }),
      )
      .default([]),
    host_access: z
      .enum(["admin", "operators"])
      .default("admin")
      .describe(
        "who may deploy host-level options (host/container: networks, named volumes and bind mounts outside <srv_root>/<service>/, ports on every interface): admins only, or every operator",
      ),
  })
  .prefault({});

export function mciasSection(defaultServiceName: string) {
  return z
    .strictObject({
      server_url: urlString,
      /** PEM path; empty = system roots. */
      ca_cert: z.string().default(""),
      service_name: z.string().min(1).default(defaultServiceName),
      validate_path: z
        .string()
        .startsWith("/", { error: 'expected a path starting with "/"' })
        .default("/v1/token/validate"),
      insecure_http: insecureHttp,
    })
    .check(checkHttpsUnlessInsecure)
    .optional();
}

export const tlsSection = z.strictObject({ ca_cert: z.string().min(1) }).optional();

export const logSection = z
  .strictObject({ level: z.enum(["debug", "info", "warn", "error"]).default("info") })
  .prefault({});

export { archSchema } from "./names.ts";

/** Cross-section rule shared by both daemons: the chosen auth mode must be configured. */
export function checkAuth(
  cfg: { auth: { mode: string; tokens: unknown[] }; mcias?: unknown },
  push: (path: PropertyKey[], message: string) => void,
): void {
  if (cfg.auth.mode === "mcias" && cfg.mcias === undefined) {
    push(["mcias"], 'section is required when auth.mode = "mcias" (the default); or set auth.mode = "local"');
  }
  if (cfg.auth.mode === "local" && cfg.auth.tokens.length === 0) {
    push(["auth", "tokens"], 'expected at least one [[auth.tokens]] entry when auth.mode = "local"');
  }
}
