// Master daemon config (`/srv/mcp-master/mcp-master.toml`, SPEC §3.4 and
// architecture-v2 "Master Configuration"): schema with the v2 defaults.
// Unknown keys are warnings; durations are milliseconds.
import { z } from "zod";
import { checkUniqueNodeNames, duration, hostPortString, loadToml, parseWith } from "./load.ts";
import {
  archSchema,
  authSection,
  checkAuth,
  logSection,
  mciasSection,
  serverSection,
  tlsSection,
} from "./sections.ts";
import { nameSchema } from "./service.ts";

const DOMAIN_RE = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/;
const domain = z.string().regex(DOMAIN_RE, {
  error: (iss) => `expected a lowercase domain such as "example.net", got ${JSON.stringify(iss.input)}`,
});

export const masterSchema = z
  .strictObject({
    server: serverSection,
    database: z.strictObject({ path: z.string().min(1).default("/srv/mcp-master/master.db") }).prefault({}),
    auth: authSection,
    mcias: mciasSection("mcp-master"),
    tls: tlsSection,
    edge: z.strictObject({ allowed_domains: z.array(domain).default([]) }).prefault({}),
    registration: z
      .strictObject({
        /** MCIAS identities (`agent-<node>`) allowed to register. */
        allowed_agents: z.array(z.string().min(1)).default([]),
        /**
         * The role of each node, decided here and never by the node: `roles = { rift = "edge" }`
         * (keys are node names, the agent identity without `agent-`). An allowed agent not named
         * here takes its [[nodes]] entry's role, else "worker"; a Register claiming another role
         * is refused.
         */
        roles: z
          .record(nameSchema, z.enum(["worker", "edge", "master"]))
          .default({})
          .describe(
            'node name → role ("worker", "edge", "master"); unnamed nodes take their [[nodes]] role, else worker; a Register claiming another role is refused',
          ),
        max_nodes: z.number().int().min(1).default(16),
        /** Rate limits per agent identity (architecture-v2): Register 1/min, Heartbeat 1/10 s. */
        register_interval: duration.prefault("60s"),
        heartbeat_min_interval: duration.prefault("10s"),
      })
      .prefault({}),
    timeouts: z
      .strictObject({
        deploy: duration.prefault("5m"),
        edge_route: duration.prefault("30s"),
        health_check: duration.prefault("5s"),
        undeploy: duration.prefault("2m"),
        snapshot: duration.prefault("10m"),
      })
      .prefault({}),
    master: z
      .strictObject({
        heartbeat_miss: z.number().int().min(1).default(3),
        heartbeat_interval: duration.prefault("30s"),
        probe_timeout: duration.prefault("5s"),
        /** SPEC §3.4 spelling; merged into edge.allowed_domains. */
        allowed_public_domains: z.array(domain).default([]),
        /**
         * The master's client certificate and key for agents (CN mcp-master, clientAuth, issued by
         * the fleet CA: `mcp init --local` and `mcp node provision --master-cert` write them).
         */
        client_cert: z.string().min(1).optional(),
        client_key: z.string().min(1).optional(),
        /** Refused (see the check below): a bearer token one agent receives can be replayed on all. */
        token_path: z.string().min(1).optional(),
        node_srv_root: z
          .string()
          .startsWith("/", { error: "expected an absolute path" })
          .default("/srv")
          .describe(
            "the nodes' [agent] srv_root (provision writes /srv): volumes under <node_srv_root>/<service>/ need no admin",
          ),
      })
      .prefault({}),
    nodes: z
      .array(
        z.strictObject({
          name: nameSchema,
          address: hostPortString,
          role: z.enum(["worker", "edge", "master"]).default("worker"),
          arch: archSchema,
        }),
      )
      .default([]),
    snapshots: z
      .strictObject({
        dir: z.string().min(1).default("/srv/mcp-master/snapshots"),
        interval: duration.prefault("24h"),
        retain: z.number().int().min(1).default(7),
        /** Largest archive (compressed bytes) stored for one snapshot; a larger one is refused whole. */
        max_bytes: z
          .number()
          .int()
          .min(1, { error: "expected at least 1" })
          .default(1024 ** 3),
      })
      .optional(),
    log: logSection,
  })
  .check((ctx) => {
    checkAuth(ctx.value, (path, message) =>
      ctx.issues.push({ code: "custom", message, path, input: ctx.value }),
    );
    const push = (path: PropertyKey[], message: string) =>
      ctx.issues.push({ code: "custom", message, path, input: ctx.value });
    if (ctx.value.master.token_path !== undefined)
      push(
        ["master", "token_path"],
        "is no longer accepted: any agent that received the master's token could replay it on every other agent; set master.client_cert and master.client_key (a fleet-CA client certificate)",
      );
    if ((ctx.value.master.client_cert === undefined) !== (ctx.value.master.client_key === undefined))
      push(
        ["master", ctx.value.master.client_cert === undefined ? "client_cert" : "client_key"],
        "client_cert and client_key go together",
      );
    checkUniqueNodeNames(ctx);
    const allowed = new Set(ctx.value.registration.allowed_agents);
    for (const [node, role] of Object.entries(ctx.value.registration.roles)) {
      const boot = ctx.value.nodes.find((n) => n.name === node);
      const issue = (message: string) =>
        ctx.issues.push({ code: "custom", message, path: ["registration", "roles", node], input: role });
      if (!allowed.has(`agent-${node}`)) {
        issue(`node "${node}" has no agent-${node} in [registration] allowed_agents`);
      } else if (boot !== undefined && boot.role !== role) {
        issue(`"${role}" contradicts the [[nodes]] entry "${node}" (role "${boot.role}")`);
      }
    }
  })
  .transform((cfg) => {
    const merged = [...new Set([...cfg.edge.allowed_domains, ...cfg.master.allowed_public_domains])];
    return { ...cfg, edge: { allowed_domains: merged } };
  });

export type MasterConfig = z.output<typeof masterSchema>;

export const DEFAULT_MASTER_CONFIG_PATH = "/srv/mcp-master/mcp-master.toml";

export interface LoadedMasterConfig {
  config: MasterConfig;
  warnings: string[];
}

export function loadMasterConfig(file: string): LoadedMasterConfig {
  return parseMasterConfig(loadToml(file), file);
}

export function parseMasterConfig(data: unknown, file: string): LoadedMasterConfig {
  const warnings: string[] = [];
  const config = parseWith(masterSchema, data, file, {
    unknownKeys: "warn",
    onWarn: (w) => warnings.push(w),
  });
  return { config, warnings };
}
