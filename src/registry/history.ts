// Spec history: one row per deploy, rollback or failed attempt of a service, holding the whole
// definition that ran, so `mcp rollback` can redeploy an earlier one. Only the newest `keep` rows
// per service stay; older ones are pruned in the same transaction as the insert.

import type { Database } from "bun:sqlite";
import { SQL_NOW } from "../util/sqlite.ts";
import type { HistoryInput, HistoryKind, HistoryRecord } from "./types.ts";
import { fromDb, RegistryError, toDb } from "./types.ts";

interface HistoryRow {
  id: number;
  service: string;
  deployed_at: string;
  caller: string;
  image_summary: string;
  spec_json: string;
  kind: string;
  detail: string;
}

const KINDS: readonly HistoryKind[] = ["deploy", "rollback", "failed"];
const COLS = "id, service, deployed_at, caller, image_summary, spec_json, kind, detail";

function toRecord(r: HistoryRow): HistoryRecord {
  return {
    id: r.id,
    service: r.service,
    deployedAt: fromDb(r.deployed_at),
    caller: r.caller,
    imageSummary: r.image_summary,
    specJson: r.spec_json,
    kind: (KINDS as readonly string[]).includes(r.kind) ? (r.kind as HistoryKind) : "deploy",
    detail: r.detail,
  };
}

/** Appends a row and prunes the service's rows beyond the newest `keep`; returns the new id. */
export function insertHistory(db: Database, h: HistoryInput, keep: number): number {
  if (!KINDS.includes(h.kind)) throw new RegistryError(`invalid history kind ${JSON.stringify(h.kind)}`);
  if (!Number.isInteger(keep) || keep < 1)
    throw new RegistryError(`history keep must be at least 1, got ${keep}`);
  return db.transaction(() => {
    const at = h.deployedAt === undefined ? SQL_NOW : "?";
    const binds: (string | number)[] = [h.service];
    if (h.deployedAt !== undefined) binds.push(toDb(h.deployedAt));
    binds.push(h.caller, h.imageSummary, h.specJson, h.kind, h.detail);
    const row = db
      .query<{ id: number }, (string | number)[]>(
        `INSERT INTO deploy_history (service, deployed_at, caller, image_summary, spec_json, kind, detail)
         VALUES (?, ${at}, ?, ?, ?, ?, ?) RETURNING id`,
      )
      .get(...binds);
    db.query<unknown, [string, string, number]>(
      `DELETE FROM deploy_history WHERE service = ? AND id NOT IN
         (SELECT id FROM deploy_history WHERE service = ? ORDER BY id DESC LIMIT ?)`,
    ).run(h.service, h.service, keep);
    return row!.id;
  })();
}

/** A service's rows, newest first. */
export function listHistory(db: Database, service: string): HistoryRecord[] {
  return db
    .query<HistoryRow, [string]>(`SELECT ${COLS} FROM deploy_history WHERE service = ? ORDER BY id DESC`)
    .all(service)
    .map(toRecord);
}

export function getHistory(db: Database, id: number): HistoryRecord | null {
  const row = db.query<HistoryRow, [number]>(`SELECT ${COLS} FROM deploy_history WHERE id = ?`).get(id);
  return row ? toRecord(row) : null;
}
