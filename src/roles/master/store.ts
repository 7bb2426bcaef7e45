// The master's own state (architecture-v2 "mcp-master" database): nodes, placements, edge
// routes and snapshot metadata in one bun:sqlite file (WAL). Agents own their container state;
// this only records where services were placed and what the master set up for them, so undeploy
// and status know where to look. Versioned, append-only migrations like the agent registry.
import type { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { applyPragmas, type Migration, migrateSchema, openOwnerOnly, SQL_NOW } from "../../util/sqlite.ts";

export type NodeRole = "worker" | "edge" | "master";
export type NodeStatus = "healthy" | "unhealthy" | "unknown";

export interface NodeInput {
  name: string;
  role: NodeRole;
  /** Primary address (host:port) the master dials first. */
  address: string;
  /** Fallback addresses, tried in order after `address`. */
  addresses?: string[];
  arch: string;
  /** Agent version reported at registration; "" or absent keeps the stored one. */
  version?: string;
}

export interface NodeRecord {
  name: string;
  role: NodeRole;
  address: string;
  addresses: string[];
  arch: string;
  version: string;
  status: NodeStatus;
  containers: number;
  cpuMillicores: number;
  memoryBytes: number;
  diskBytes: number;
  /** ISO-8601, null until the first heartbeat. */
  lastHeartbeat: string | null;
  registeredAt: string;
  /**
   * The component runtime kinds the node reported ("container", "unikernel"), refreshed at each
   * Register and Heartbeat; null until it reported them (placement: only "container" assumed).
   */
  runtimes: string[] | null;
  /** Its unikernel runtime's accelerator ("kvm", "tcg") and why; "" when none reported. */
  unikernelAccel: string;
  unikernelAccelReason: string;
}

/** What a node reports about its runtimes (Register, Heartbeat). */
export interface NodeRuntimesInput {
  runtimes: readonly string[];
  unikernelAccel: string;
  unikernelAccelReason: string;
}

export interface HeartbeatInput {
  containers: number;
  cpuMillicores: number;
  memoryBytes: number;
  diskBytes: number;
  at?: Date;
}

export interface PlacementInput {
  service: string;
  node: string;
  tier: string;
  /** The deployed ServiceSpec as JSON (toJson), so sync can tell a changed spec. */
  specJson?: string | null;
}

export interface PlacementRecord {
  service: string;
  node: string;
  tier: string;
  specJson: string | null;
  deployedAt: string;
}

export interface EdgeRouteInput {
  hostname: string;
  service: string;
  edgeNode: string;
  backendHostname: string;
  backendPort: number;
  certExpires?: string | null;
}

export interface EdgeRouteRecord {
  hostname: string;
  service: string;
  edgeNode: string;
  backendHostname: string;
  backendPort: number;
  certExpires: string | null;
  createdAt: string;
}

export class MasterStoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MasterStoreError";
  }
}

// Version 1: the v2 schema plus what the fleet view needs (version, fallback addresses,
// resources, the deployed spec). edge_routes cascade with their placement: a removed placement
// has no edge routes left to clean up by construction.
const V1 = `
CREATE TABLE nodes (
  name TEXT PRIMARY KEY,
  role TEXT NOT NULL,
  address TEXT NOT NULL,
  addresses TEXT NOT NULL DEFAULT '[]',
  arch TEXT NOT NULL,
  version TEXT NOT NULL DEFAULT '',
  status TEXT NOT NULL DEFAULT 'unknown',
  containers INTEGER NOT NULL DEFAULT 0,
  cpu_millicores INTEGER NOT NULL DEFAULT 0,
  memory_bytes INTEGER NOT NULL DEFAULT 0,
  disk_bytes INTEGER NOT NULL DEFAULT 0,
  last_heartbeat TEXT,
  registered_at TEXT NOT NULL DEFAULT (${SQL_NOW})
);
CREATE TABLE placements (
  service_name TEXT PRIMARY KEY,
  node TEXT NOT NULL REFERENCES nodes(name),
  tier TEXT NOT NULL,
  spec_json TEXT,
  deployed_at TEXT NOT NULL DEFAULT (${SQL_NOW})
);
CREATE TABLE edge_routes (
  hostname TEXT PRIMARY KEY,
  service_name TEXT NOT NULL REFERENCES placements(service_name) ON DELETE CASCADE,
  edge_node TEXT NOT NULL REFERENCES nodes(name),
  backend_hostname TEXT NOT NULL,
  backend_port INTEGER NOT NULL,
  cert_expires TEXT,
  created_at TEXT NOT NULL DEFAULT (${SQL_NOW})
);
CREATE INDEX idx_edge_routes_service ON edge_routes(service_name);
CREATE TABLE snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  service_name TEXT NOT NULL,
  node TEXT NOT NULL,
  filename TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX idx_snapshots_service ON snapshots(service_name, created_at DESC);
`;

// Version 2: the runtime kinds each node reported (JSON list, NULL = never reported) and its
// unikernel accelerator, so placement keeps unikernel components on nodes that can run them.
const V2 = `
ALTER TABLE nodes ADD COLUMN runtimes TEXT;
ALTER TABLE nodes ADD COLUMN unikernel_accel TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN unikernel_accel_reason TEXT NOT NULL DEFAULT '';
`;

export const MASTER_MIGRATIONS: readonly Migration[] = [
  { version: 1, sql: V1 },
  { version: 2, sql: V2 },
];

interface NodeRow {
  name: string;
  role: string;
  address: string;
  addresses: string;
  arch: string;
  version: string;
  status: string;
  containers: number;
  cpu_millicores: number;
  memory_bytes: number;
  disk_bytes: number;
  last_heartbeat: string | null;
  registered_at: string;
  runtimes: string | null;
  unikernel_accel: string;
  unikernel_accel_reason: string;
}

interface PlacementRow {
  service_name: string;
  node: string;
  tier: string;
  spec_json: string | null;
  deployed_at: string;
}

interface EdgeRow {
  hostname: string;
  service_name: string;
  edge_node: string;
  backend_hostname: string;
  backend_port: number;
  cert_expires: string | null;
  created_at: string;
}

function nodeOf(r: NodeRow): NodeRecord {
  let addresses: string[] = [];
  try {
    const parsed: unknown = JSON.parse(r.addresses);
    if (Array.isArray(parsed)) addresses = parsed.filter((a): a is string => typeof a === "string");
  } catch {
    // A corrupt list only loses fallbacks; the primary address still works.
  }
  return {
    name: r.name,
    role: r.role as NodeRole,
    address: r.address,
    addresses,
    arch: r.arch,
    version: r.version,
    status: r.status as NodeStatus,
    containers: r.containers,
    cpuMillicores: r.cpu_millicores,
    memoryBytes: r.memory_bytes,
    diskBytes: r.disk_bytes,
    lastHeartbeat: r.last_heartbeat,
    registeredAt: r.registered_at,
    runtimes: runtimesOf(r.runtimes),
    unikernelAccel: r.unikernel_accel,
    unikernelAccelReason: r.unikernel_accel_reason,
  };
}

/** The stored list; null when never reported (or unreadable: as good as not reported). */
function runtimesOf(text: string | null): string[] | null {
  if (text === null) return null;
  try {
    const parsed: unknown = JSON.parse(text);
    if (Array.isArray(parsed) && parsed.every((k) => typeof k === "string")) return parsed;
  } catch {
    // fall through
  }
  return null;
}

const placementOf = (r: PlacementRow): PlacementRecord => ({
  service: r.service_name,
  node: r.node,
  tier: r.tier,
  specJson: r.spec_json,
  deployedAt: r.deployed_at,
});

const edgeOf = (r: EdgeRow): EdgeRouteRecord => ({
  hostname: r.hostname,
  service: r.service_name,
  edgeNode: r.edge_node,
  backendHostname: r.backend_hostname,
  backendPort: r.backend_port,
  certExpires: r.cert_expires,
  createdAt: r.created_at,
});

export class MasterStore {
  /** node → time until which the master's own container count wins over heartbeats (memory only). */
  private readonly holds = new Map<string, number>();

  constructor(
    readonly db: Database,
    readonly path: string,
  ) {}

  close(): void {
    this.db.close();
  }

  withTransaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // --- nodes ---------------------------------------------------------------

  /** Registration and bootstrap: status and heartbeat data are kept on update. */
  upsertNode(n: NodeInput): void {
    this.db
      .query(
        `INSERT INTO nodes (name, role, address, addresses, arch, version)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET role = excluded.role, address = excluded.address,
           addresses = excluded.addresses, arch = excluded.arch,
           version = CASE WHEN excluded.version = '' THEN nodes.version ELSE excluded.version END`,
      )
      .run(n.name, n.role, n.address, JSON.stringify(n.addresses ?? []), n.arch, n.version ?? "");
  }

  getNode(name: string): NodeRecord | null {
    const r = this.db.query<NodeRow, [string]>("SELECT * FROM nodes WHERE name = ?").get(name);
    return r ? nodeOf(r) : null;
  }

  listNodes(): NodeRecord[] {
    return this.db.query<NodeRow, []>("SELECT * FROM nodes ORDER BY name").all().map(nodeOf);
  }

  /** Returns false when the node is unknown. */
  setNodeStatus(name: string, status: NodeStatus): boolean {
    return this.db.query("UPDATE nodes SET status = ? WHERE name = ?").run(status, name).changes > 0;
  }

  /** Stores the heartbeat's resources and time; status is the caller's decision. False = unknown node. */
  recordHeartbeat(name: string, h: HeartbeatInput): boolean {
    const at = (h.at ?? new Date()).toISOString();
    // A heartbeat sampled before a deploy the master just made can arrive after it: while the
    // master's own count is held (setContainers), the heartbeat's count does not replace it.
    const held = (this.holds.get(name) ?? 0) > Date.now();
    if (held) {
      return (
        this.db
          .query(
            `UPDATE nodes SET cpu_millicores = ?, memory_bytes = ?, disk_bytes = ?, last_heartbeat = ?
               WHERE name = ?`,
          )
          .run(h.cpuMillicores, h.memoryBytes, h.diskBytes, at, name).changes > 0
      );
    }
    return (
      this.db
        .query(
          `UPDATE nodes SET containers = ?, cpu_millicores = ?, memory_bytes = ?, disk_bytes = ?,
             last_heartbeat = ? WHERE name = ?`,
        )
        .run(h.containers, h.cpuMillicores, h.memoryBytes, h.diskBytes, at, name).changes > 0
    );
  }

  /** Stores what the node reported about its runtimes (Register, Heartbeat). False = unknown node. */
  setNodeRuntimes(name: string, r: NodeRuntimesInput): boolean {
    return (
      this.db
        .query(
          "UPDATE nodes SET runtimes = ?, unikernel_accel = ?, unikernel_accel_reason = ? WHERE name = ?",
        )
        .run(JSON.stringify([...r.runtimes]), r.unikernelAccel, r.unikernelAccelReason, name).changes > 0
    );
  }

  /**
   * The container count learned between heartbeats (after a deploy), so placement sees it at once.
   * `holdMs`: heartbeats arriving within this time keep this count (they may have been sampled
   * before the change); pass about one heartbeat interval.
   */
  setContainers(name: string, containers: number, holdMs = 0): void {
    this.db.query("UPDATE nodes SET containers = ? WHERE name = ?").run(containers, name);
    if (holdMs > 0) this.holds.set(name, Date.now() + holdMs);
  }

  /** Refuses while placements or edge routes still reference the node. */
  deleteNode(name: string): boolean {
    try {
      return this.db.query("DELETE FROM nodes WHERE name = ?").run(name).changes > 0;
    } catch (e) {
      throw new MasterStoreError(
        `node "${name}" still has placements or edge routes: ${(e as Error).message}`,
      );
    }
  }

  // --- placements ----------------------------------------------------------

  upsertPlacement(p: PlacementInput): void {
    try {
      this.db
        .query(
          `INSERT INTO placements (service_name, node, tier, spec_json, deployed_at)
           VALUES (?, ?, ?, ?, ${SQL_NOW})
           ON CONFLICT(service_name) DO UPDATE SET node = excluded.node, tier = excluded.tier,
             spec_json = excluded.spec_json, deployed_at = excluded.deployed_at`,
        )
        .run(p.service, p.node, p.tier, p.specJson ?? null);
    } catch (e) {
      throw new MasterStoreError(`cannot place "${p.service}" on "${p.node}": ${(e as Error).message}`);
    }
  }

  getPlacement(service: string): PlacementRecord | null {
    const r = this.db
      .query<PlacementRow, [string]>("SELECT * FROM placements WHERE service_name = ?")
      .get(service);
    return r ? placementOf(r) : null;
  }

  listPlacements(node?: string): PlacementRecord[] {
    const rows =
      node === undefined
        ? this.db.query<PlacementRow, []>("SELECT * FROM placements ORDER BY service_name").all()
        : this.db
            .query<PlacementRow, [string]>("SELECT * FROM placements WHERE node = ? ORDER BY service_name")
            .all(node);
    return rows.map(placementOf);
  }

  /** Removes the placement and (cascade) its edge routes. */
  deletePlacement(service: string): boolean {
    return this.db.query("DELETE FROM placements WHERE service_name = ?").run(service).changes > 0;
  }

  // --- edge routes ---------------------------------------------------------

  upsertEdgeRoute(e: EdgeRouteInput): void {
    try {
      this.db
        .query(
          `INSERT INTO edge_routes (hostname, service_name, edge_node, backend_hostname, backend_port, cert_expires)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(hostname) DO UPDATE SET service_name = excluded.service_name,
             edge_node = excluded.edge_node, backend_hostname = excluded.backend_hostname,
             backend_port = excluded.backend_port, cert_expires = excluded.cert_expires`,
        )
        .run(e.hostname, e.service, e.edgeNode, e.backendHostname, e.backendPort, e.certExpires ?? null);
    } catch (err) {
      throw new MasterStoreError(`cannot record edge route ${e.hostname}: ${(err as Error).message}`);
    }
  }

  listEdgeRoutes(service?: string): EdgeRouteRecord[] {
    const rows =
      service === undefined
        ? this.db.query<EdgeRow, []>("SELECT * FROM edge_routes ORDER BY hostname").all()
        : this.db
            .query<EdgeRow, [string]>("SELECT * FROM edge_routes WHERE service_name = ? ORDER BY hostname")
            .all(service);
    return rows.map(edgeOf);
  }

  deleteEdgeRoute(hostname: string): boolean {
    return this.db.query("DELETE FROM edge_routes WHERE hostname = ?").run(hostname).changes > 0;
  }

  // --- snapshots -----------------------------------------------------------

  addSnapshot(s: Omit<SnapshotRecord, "id">): SnapshotRecord {
    const r = this.db
      .query(
        "INSERT INTO snapshots (service_name, node, filename, size_bytes, created_at) VALUES (?, ?, ?, ?, ?)",
      )
      .run(s.service, s.node, s.filename, s.sizeBytes, s.createdAt);
    return { id: Number(r.lastInsertRowid), ...s };
  }

  /** Newest first (created_at, then insertion order for equal times). */
  listSnapshots(service?: string): SnapshotRecord[] {
    const rows =
      service === undefined
        ? this.db
            .query<SnapshotRow, []>("SELECT * FROM snapshots ORDER BY service_name, created_at DESC, id DESC")
            .all()
        : this.db
            .query<SnapshotRow, [string]>(
              "SELECT * FROM snapshots WHERE service_name = ? ORDER BY created_at DESC, id DESC",
            )
            .all(service);
    return rows.map((r) => ({
      id: r.id,
      service: r.service_name,
      node: r.node,
      filename: r.filename,
      sizeBytes: r.size_bytes,
      createdAt: r.created_at,
    }));
  }

  deleteSnapshot(id: number): boolean {
    return this.db.query("DELETE FROM snapshots WHERE id = ?").run(id).changes > 0;
  }
}

interface SnapshotRow {
  id: number;
  service_name: string;
  node: string;
  filename: string;
  size_bytes: number;
  created_at: string;
}

/** One stored service snapshot; `filename` is relative to `<[snapshots] dir>/<service>/`. */
export interface SnapshotRecord {
  id: number;
  service: string;
  node: string;
  filename: string;
  sizeBytes: number;
  /** RFC 3339 UTC with milliseconds. */
  createdAt: string;
}

/** Opens (creating and migrating) the master database. */
/** Opens the master's database, owner-only (openOwnerOnly); `warn` hears of a tightened file. */
export function openMasterStore(path: string, warn?: (message: string) => void): MasterStore {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  let db: Database;
  try {
    db = openOwnerOnly(path, warn);
  } catch (e) {
    throw new MasterStoreError(`cannot open master database ${path}: ${(e as Error).message}`);
  }
  try {
    applyPragmas(db);
    migrateSchema(
      db,
      MASTER_MIGRATIONS,
      MASTER_MIGRATIONS[MASTER_MIGRATIONS.length - 1]!.version,
      (m) => new MasterStoreError(m),
      "master database",
    );
  } catch (e) {
    db.close();
    throw new MasterStoreError(`cannot open master database ${path}: ${(e as Error).message}`);
  }
  return new MasterStore(db, path);
}
