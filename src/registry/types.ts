// Registry domain vocabulary: plain record types (no protobuf), the state
// enums with runtime guards, the drift rule, and timestamp conversion. Kept
// free of SQL so callers (monitor, roles) can import it cheaply.

import type { ObservedState } from "../component/state.ts";
import type { HealthDef } from "../config/service.ts";

export { isObservedState, OBSERVED_STATES } from "../component/state.ts";
export type { HealthDef, ObservedState };

export type DesiredState = "running" | "stopped" | "ignore";

export const DESIRED_STATES: readonly DesiredState[] = ["running", "stopped", "ignore"];

export interface RouteRecord {
  name: string;
  port: number;
  mode: "l4" | "l7";
  hostname: string;
  public: boolean;
  hostPort: number;
}

export interface ComponentRecord {
  service: string;
  name: string;
  image: string;
  network: string;
  user: string;
  restart: string;
  desiredState: DesiredState;
  observedState: ObservedState;
  version: string;
  ports: string[];
  volumes: string[];
  cmd: string[];
  env: string[];
  routes: RouteRecord[];
  runtime: string;
  memory: string;
  vcpus: number;
  /** `[components.health]` as deployed; absent when none is declared. */
  health?: HealthDef;
  createdAt: Date;
  updatedAt: Date;
}

/** What upsertComponent takes: observedState is optional (kept on update, "unknown" on insert). */
export type ComponentInput = Omit<
  ComponentRecord,
  "createdAt" | "updatedAt" | "service" | "observedState"
> & {
  observedState?: ObservedState;
};

export interface ServiceRecord {
  name: string;
  active: boolean;
  tier: string;
  node: string;
  components: ComponentRecord[];
  specJson: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** Fields left undefined keep their stored value on update and take the schema default on insert. */
export interface ServiceInput {
  name: string;
  active?: boolean;
  tier?: string;
  node?: string;
  specJson?: string | null;
}

export interface EventRecord {
  id: number;
  service: string;
  component: string;
  prevState: string;
  newState: string;
  timestamp: Date;
}

export interface EventInput {
  service: string;
  component: string;
  prevState: string;
  newState: string;
  timestamp?: Date;
}

/** deploy: a successful deploy; rollback: a spec restored (automatically or by `mcp rollback`); failed: an attempt that did not become healthy. */
export type HistoryKind = "deploy" | "rollback" | "failed";

export interface HistoryRecord {
  id: number;
  service: string;
  deployedAt: Date;
  /** The RPC identity that asked for it. */
  caller: string;
  /** "web=img:v1, api=img:v2". */
  imageSummary: string;
  /** The whole service definition (ServiceDef as JSON) that ran. */
  specJson: string;
  kind: HistoryKind;
  detail: string;
}

export type HistoryInput = Omit<HistoryRecord, "id" | "deployedAt"> & { deployedAt?: Date };

export interface DriftRecord {
  service: string;
  component: string;
  desired: DesiredState;
  observed: ObservedState;
}

export interface PortAllocation {
  port: number;
  service: string;
  component: string;
  route: string;
}

export interface EdgeRouteRecord {
  hostname: string;
  backendHostname: string;
  backendPort: number;
  certSerial: string;
  certExpires: Date | null;
  createdAt: Date;
}

/** One-line error for bad input or missing rows; never carries a stack to the operator. */
export class RegistryError extends Error {
  override name = "RegistryError";
}

export function isDesiredState(s: string): s is DesiredState {
  return (DESIRED_STATES as readonly string[]).includes(s);
}

/**
 * The reference drift table: a managed component drifts when it should run
 * but does not, or should be stopped but runs. "ignore" never drifts.
 */
export function isDrift(desired: DesiredState, observed: ObservedState): boolean {
  if (desired === "running") return observed !== "running";
  if (desired === "stopped") return observed === "running";
  return false;
}

/** Dates are stored in the same ISO-8601 form SQL_NOW produces (Date#toISOString matches it). */
export function toDb(d: Date): string {
  return d.toISOString();
}

/**
 * Parse a stored timestamp. Rows written through the reference defaults
 * (datetime('now') → "YYYY-MM-DD HH:MM:SS", UTC) are accepted too.
 */
export function fromDb(s: string): Date {
  if (s.endsWith("Z")) return new Date(s);
  return new Date(`${s.replace(" ", "T")}Z`);
}
