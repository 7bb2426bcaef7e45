// Agent daemon config (`/srv/mcp/mcp-agent.toml`, SPEC §3.3): schema with the
// reference defaults, nil-safe optional sections (absent → undefined), and
// `[[boot.sequence]]` stages holding full service definitions that are
// validated as strictly as definition files. Durations are milliseconds.
import { isIP } from "node:net";
import { hostname } from "node:os";
import { z } from "zod";
import {
  checkHttpsUnlessInsecure,
  duration,
  hostPortString,
  insecureHttp,
  loadToml,
  parseWith,
  urlString,
} from "./load.ts";
import { authSection, checkAuth, logSection, mciasSection, serverSection, tlsSection } from "./sections.ts";
import { imageTagWarnings, parseServiceDef, serviceDefSchema } from "./service.ts";
import { isAnyAddr } from "./specs.ts";

const portInRange = z
  .number()
  .int()
  .check((ctx) => {
    if (ctx.value < 1 || ctx.value > 65535) {
      ctx.issues.push({
        code: "custom",
        message: `expected a port number 1-65535, got ${ctx.value}`,
        input: ctx.value,
      });
    }
  });

const nodeAddress = z.string().check((ctx) => {
  if (isIP(ctx.value) === 0 || isAnyAddr(ctx.value)) {
    ctx.issues.push({
      code: "custom",
      message: `expected this node's IP address (not a wildcard), got ${JSON.stringify(ctx.value)}`,
      input: ctx.value,
    });
  }
});

const bootStage = z.strictObject({
  name: z.string().min(1),
  services: z.array(serviceDefSchema).min(1, { error: "expected at least one service definition" }),
  /** ms to wait for the stage's health checks. */
  timeout: duration.prefault("60s"),
  health: z.enum(["tcp", "http", "grpc"]).default("tcp"),
  /** true: a failed stage stops the boot; unset: the boot code decides (foundation stages block). */
  blocking: z.boolean().optional(),
});

export const agentSchema = z
  .strictObject({
    server: serverSection,
    database: z.strictObject({ path: z.string().min(1).default("/srv/mcp/mcp.db") }).prefault({}),
    auth: authSection,
    mcias: mciasSection("mcp-agent"),
    agent: z
      .strictObject({
        node_name: z
          .string()
          .min(1)
          .default(() => hostname().split(".")[0] || "localhost"),
        container_runtime: z.enum(["podman", "docker"]).default("podman"),
        /** Extra global runtime flags, e.g. ["--runtime", "runc"]. */
        runtime_args: z.array(z.string()).default([]),
        /**
         * podman: "auto" lists containers through an agent-owned `podman system service` socket
         * (no podman process per `mcp ps` or monitor tick), falling back to the CLI when it is
         * unavailable; "off" always runs the CLI. Ignored for docker.
         */
        runtime_api: z.enum(["auto", "off"]).default("auto"),
        srv_root: z.string().startsWith("/", { error: "expected an absolute path" }).default("/srv"),
        port_range: z
          .tuple([portInRange, portInRange], { error: "expected [low, high] port numbers" })
          .default([10000, 60000])
          .check((ctx) => {
            if (ctx.value[0] > ctx.value[1]) {
              ctx.issues.push({ code: "custom", message: "expected low <= high", input: ctx.value });
            }
          }),
        pull: z.enum(["always", "missing", "never"]).default("always"),
        /** Deploy history rows kept per service (`mcp history`, `mcp rollback`). */
        history_keep: z.number().int().min(1, { error: "expected at least 1" }).default(10),
        /**
         * ImportServiceData limits (migration, snapshot restore): the file content an archive may
         * expand to, and its files plus directories. Over either, the import is refused whole and
         * nothing is left on disk.
         */
        import_max_bytes: z
          .number()
          .int()
          .min(1, { error: "expected at least 1" })
          .default(1024 ** 3),
        import_max_entries: z.number().int().min(1, { error: "expected at least 1" }).default(100_000),
        /**
         * The address other nodes, mc-proxy and DNS reach this node's route ports on; route ports
         * are published on it. An IP literal (podman publishes on IPs, DNS A records hold IPs);
         * absent = the host of server.grpc_addr.
         */
        address: nodeAddress.optional(),
        recover_on_start: z.boolean().default(false),
      })
      .prefault({}),
    monitor: z
      .strictObject({
        interval: duration.prefault("60s"),
        /** argv run on alerts (MCP_* env); empty = log only. */
        alert_command: z.array(z.string()).default([]),
        cooldown: duration.prefault("15m"),
        flap_threshold: z.number().int().min(1).default(3),
        flap_window: duration.prefault("10m"),
        retention: duration.prefault("30d"),
        alert_timeout: duration.prefault("30s"),
      })
      .prefault({}),
    master: z
      .strictObject({
        address: hostPortString,
        /**
         * What Register claims; unset claims nothing and takes the role the master's config gives.
         * The master's config decides and refuses a different claim.
         */
        role: z
          .enum(["worker", "edge", "master"])
          .optional()
          .describe(
            "role this node claims at Register (unset: whatever the master's config says); a claim must match the master's config ([registration] roles)",
          ),
        heartbeat: duration.prefault("30s"),
        ca_cert: z.string().min(1).optional(),
        token_path: z.string().min(1).optional(),
      })
      .optional(),
    /**
     * Runtimes beyond the node's container engine. `[runtimes.unikernel]` present = the node runs
     * components with runtime = "unikernel" as Nanos VMs under QEMU (when QEMU answers).
     */
    runtimes: z
      .strictObject({
        unikernel: z
          .strictObject({
            nanos_dir: z
              .string()
              .min(1)
              .describe("a Nanos release: kernel.img, boot.img (and klibs/), e.g. ~/.ops/<version>"),
            mkfs: z
              .string()
              .min(1)
              .describe("the Nanos mkfs tool (a Nanos release ships none; built from the Nanos sources)"),
            qemu: z
              .string()
              .min(1)
              .default("qemu-system-x86_64")
              .describe("the QEMU binary (Debian: qemu-system-x86)"),
            accel: z
              .enum(["auto", "kvm", "tcg"])
              .default("auto")
              .describe(
                'auto: KVM where it is real (/dev/kvm usable, kvm_intel/kvm_amd, not PVM-only), else TCG; "mcp agent status" says which',
              ),
            state_dir: z
              .string()
              .min(1)
              .optional()
              .describe(
                "per-VM state, exported image filesystems, built images (default: unikernel/ beside the registry database)",
              ),
            boot_timeout: duration
              .prefault("30s")
              .describe(
                "how long a VM may take to start (TCG: QEMU reports it running; KVM: the guest prints on its console)",
              ),
          })
          .optional(),
      })
      .prefault({}),
    /** Edge role (SetupEdgeRoute): where resolved backends may live and the public listener. */
    edge: z
      .strictObject({
        allowed_backend_cidrs: z.array(z.string().min(1)).default(["100.64.0.0/10"]),
        listener: portInRange.default(443),
      })
      .prefault({}),
    mcproxy: z.strictObject({ socket: z.string().min(1), cert_dir: z.string().min(1).optional() }).optional(),
    metacrypt: z
      .strictObject({
        server_url: urlString,
        ca_cert: z.string().default(""),
        mount: z.string().min(1).default("pki"),
        issuer: z.string().min(1).default("infra"),
        token_path: z.string().min(1),
        insecure_http: insecureHttp,
      })
      .check(checkHttpsUnlessInsecure)
      .optional(),
    mcns: z
      .strictObject({
        server_url: urlString,
        ca_cert: z.string().default(""),
        zone: z.string().min(1).default("svc.mcp.metacircular.net"),
        token_path: z.string().min(1),
        insecure_http: insecureHttp,
      })
      .check(checkHttpsUnlessInsecure)
      .optional(),
    tls: tlsSection,
    boot: z.strictObject({ sequence: z.array(bootStage).default([]) }).optional(),
    log: logSection,
  })
  .check((ctx) => {
    checkAuth(ctx.value, (path, message) =>
      ctx.issues.push({ code: "custom", message, path, input: ctx.value }),
    );
  });

export type AgentConfig = z.output<typeof agentSchema>;
export type BootStage = NonNullable<AgentConfig["boot"]>["sequence"][number];

export const DEFAULT_AGENT_CONFIG_PATH = "/srv/mcp/mcp-agent.toml";

export interface LoadedAgentConfig {
  config: AgentConfig;
  warnings: string[];
}

export function loadAgentConfig(file: string, opts: { strict?: boolean } = {}): LoadedAgentConfig {
  return parseAgentConfig(loadToml(file), file, opts);
}

export function parseAgentConfig(
  data: unknown,
  file: string,
  opts: { strict?: boolean } = {},
): LoadedAgentConfig {
  const warnings: string[] = [];
  // Boot definitions are service definitions: typos in them are errors even
  // though unknown keys elsewhere in a daemon config are only warnings.
  forEachBootService(data, (svc, path) => parseServiceDef(svc, file, { strict: opts.strict }, path));
  const config = parseWith(agentSchema, data, file, { unknownKeys: "warn", onWarn: (w) => warnings.push(w) });
  config.boot?.sequence.forEach((stage, i) => {
    stage.services.forEach((svc, j) => {
      warnings.push(
        ...imageTagWarnings(svc, file, opts.strict === true, ["boot", "sequence", i, "services", j]),
      );
    });
  });
  return { config, warnings };
}

function forEachBootService(data: unknown, fn: (svc: unknown, path: PropertyKey[]) => void): void {
  const seq = (data as { boot?: { sequence?: unknown } } | undefined)?.boot?.sequence;
  if (!Array.isArray(seq)) return;
  seq.forEach((stage, i) => {
    const services = (stage as { services?: unknown } | undefined)?.services;
    if (!Array.isArray(services)) return;
    services.forEach((svc, j) => {
      if (svc !== null && typeof svc === "object" && !Array.isArray(svc))
        fn(svc, ["boot", "sequence", i, "services", j]);
    });
  });
}
