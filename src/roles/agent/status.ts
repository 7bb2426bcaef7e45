// Read side of the agent: registry listing, live check (reconcile then report), status with
// drift and recent events, and the node's own status (runtime, resources, versions).

import { readFileSync, statfsSync } from "node:fs";
import os from "node:os";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { containerName } from "../../component/container.ts";
import { defToSpec } from "../../component/proto.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import {
  type NodeStatusResponse,
  NodeStatusResponseSchema,
  type ServiceInfo,
  type ServiceStatusResponse,
  ServiceStatusResponseSchema,
} from "../../gen/mcp/v1/mcp_pb.ts";
import { invalidArgument, notFound } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { LiveStatus } from "../../runtime/live-runtime.ts";
import type { ContainerInfo } from "../../runtime/runtime.ts";
import type { AgentContext } from "./context.ts";
import { type ReconcileResult, reconcile, startedOf } from "./reconcile.ts";
import { serviceInfo } from "./service-info.ts";

export function listServices(ctx: AgentContext): ServiceInfo[] {
  return ctx.registry.listServices().map((s) => serviceInfo(s));
}

// Single flight: calls that arrive while a read-side reconcile is running share it (one `podman ps`
// for N concurrent `mcp ps`). Its listing started at most one runtime call before theirs, and a
// call arriving after it settles starts a fresh one, so nothing older than that is ever reported.
const inFlight = new WeakMap<AgentContext, Promise<ReconcileResult>>();

export function sharedReconcile(ctx: AgentContext): Promise<ReconcileResult> {
  let p = inFlight.get(ctx);
  if (!p) {
    p = reconcile(ctx).finally(() => inFlight.delete(ctx));
    inFlight.set(ctx, p);
  }
  return p;
}

export async function liveCheck(ctx: AgentContext): Promise<ServiceInfo[]> {
  const res = await sharedReconcile(ctx);
  return res.services.map((s) => serviceInfo(s, startedOf(res, s.name)));
}

export async function serviceStatus(ctx: AgentContext, name: string): Promise<ServiceStatusResponse> {
  const res = await sharedReconcile(ctx);
  const services = name ? res.services.filter((s) => s.name === name) : res.services;
  if (name && services.length === 0)
    throw notFound(`unknown service "${name}" on node ${ctx.settings.nodeName}`);
  const drift = ctx.registry.drift(name || undefined);
  const events = ctx.registry.recentEvents({ service: name || undefined, limit: 20 });
  return create(ServiceStatusResponseSchema, {
    services: services.map((s) => serviceInfo(s, startedOf(res, s.name))),
    drift: drift.map((d) => ({
      service: d.service,
      component: d.component,
      desiredState: d.desired,
      observedState: d.observed,
    })),
    recentEvents: events.map((e) => ({
      service: e.service,
      component: e.component,
      prevState: e.prevState,
      newState: e.newState,
      timestamp: timestampFromDate(e.timestamp),
    })),
  });
}

export function goArch(nodeArch: string = process.arch): string {
  if (nodeArch === "x64") return "amd64";
  return nodeArch;
}

/** Cumulative CPU time of all cores (ms); the busy fraction is the delta between two samples. */
export function cpuSample(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
  }
  return { idle, total };
}

let lastCpu = cpuSample();
function cpuUsagePercent(): number {
  const now = cpuSample();
  const dt = now.total - lastCpu.total;
  const di = now.idle - lastCpu.idle;
  lastCpu = now;
  return dt > 0 ? Math.round(((dt - di) / dt) * 1000) / 10 : 0;
}

export function memAvailable(): number {
  // MemAvailable is what an operator means by "free"; os.freemem() is MemFree.
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync("/proc/meminfo", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return os.freemem();
}

/**
 * What the node tells about its runtimes (NodeStatus, Register, Heartbeat): the kinds it runs and,
 * when one is "unikernel", the accelerator its VMs boot with and why.
 */
export function runtimeReport(ctx: AgentContext): {
  runtimes: string[];
  unikernelAccel: string;
  unikernelAccelReason: string;
} {
  const runtimes = ctx.runtime.kinds();
  const info = runtimes.includes("unikernel") ? ctx.unikernelInfo?.() : undefined;
  return { runtimes, unikernelAccel: info?.accel ?? "", unikernelAccelReason: info?.reason ?? "" };
}

export async function nodeStatus(ctx: AgentContext): Promise<NodeStatusResponse> {
  let runtimeVersion = "";
  let runtimeError = "";
  let running = 0;
  try {
    const [v, list] = await Promise.all([ctx.runtime.version(), ctx.runtime.list()]);
    runtimeVersion = v;
    running = list.filter((c) => c.state === "running").length;
  } catch (err) {
    runtimeError = (err as Error).message.split("\n")[0] ?? "runtime error";
  }
  const services = ctx.registry
    .listServices()
    .filter((s) => s.components.some((c) => c.desiredState !== "ignore"));
  let diskTotal = 0n;
  let diskFree = 0n;
  try {
    const st = statfsSync(ctx.settings.srvRoot);
    diskTotal = BigInt(st.blocks) * BigInt(st.bsize);
    diskFree = BigInt(st.bavail) * BigInt(st.bsize);
  } catch {
    // srv_root may not exist yet on a fresh node: report zeros rather than fail the RPC.
  }
  return create(NodeStatusResponseSchema, {
    nodeName: ctx.settings.nodeName,
    // The node's container engine ("podman", "docker"); the kinds it runs are in `runtimes`.
    runtime: ctx.runtime.engineOf("container") ?? "",
    ...runtimeReport(ctx),
    runtimeVersion,
    runtimeError,
    serviceCount: services.length,
    componentCount: services.reduce((n, s) => n + s.components.length, 0),
    runningContainers: running,
    diskTotalBytes: diskTotal,
    diskFreeBytes: diskFree,
    memoryTotalBytes: BigInt(os.totalmem()),
    memoryFreeBytes: BigInt(memAvailable()),
    cpuUsagePercent: cpuUsagePercent(),
    uptimeSince: timestampFromDate(new Date(Date.now() - os.uptime() * 1000)),
    agentVersion: ctx.settings.version,
    arch: goArch(),
    agentStarted: timestampFromDate(ctx.startedAt),
    ...(ctx.live ? { liveView: liveViewStatus(ctx.live.status()) } : {}),
  });
}

function liveViewStatus(s: LiveStatus) {
  return {
    streaming: s.streaming,
    current: s.current,
    ...(s.confirmedAt !== null ? { confirmedAt: timestampFromDate(new Date(s.confirmedAt)) } : {}),
    containers: s.containers,
    events: BigInt(s.events),
    listings: BigInt(s.listings),
    via: s.via ?? "",
  };
}

/**
 * Running containers that belong to services this agent manages (desired state other than
 * `ignore`): what the master places by. Unmanaged containers on the same runtime are not
 * placements, and agents sharing a runtime (tests) must not count each other's.
 */
export function managedRunning(ctx: AgentContext, list: ContainerInfo[]): number {
  const running = new Set(list.filter((c) => c.state === "running").map((c) => c.name));
  let n = 0;
  for (const s of ctx.registry.listServices()) {
    for (const c of s.components) {
      if (c.desiredState !== "ignore" && running.has(containerName(s.name, c.name))) n++;
    }
  }
  return n;
}

/** The read-side RPCs: ListServices, LiveCheck, GetServiceStatus, NodeStatus, GetServiceSpec, HealthCheck. */
export function statusHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async listServices() {
      return { services: listServices(ctx) };
    },
    async liveCheck() {
      return { services: await liveCheck(ctx) };
    },
    async getServiceStatus(req) {
      return serviceStatus(ctx, req.name);
    },
    async nodeStatus() {
      return nodeStatus(ctx);
    },
    async getServiceSpec(req) {
      if (!req.name) throw invalidArgument("service name is required");
      const svc = ctx.registry.getService(req.name);
      if (!svc?.specJson)
        throw notFound(`no deployed spec for service "${req.name}" on node ${ctx.settings.nodeName}`);
      return { service: defToSpec(JSON.parse(svc.specJson) as ServiceDef) };
    },
    async healthCheck() {
      const list = await ctx.runtime.list().catch(() => null);
      return {
        status: list ? "healthy" : "degraded",
        containers: list ? managedRunning(ctx, list) : 0,
      };
    },
  };
}
