// Public surface of the registry package: open it, then use the Registry.

export { openRegistry } from "./db.ts";
export type { RecentEventsQuery } from "./events.ts";
export { LATEST_VERSION, MIGRATIONS, migrate } from "./migrations.ts";
export { Registry } from "./registry.ts";
export * from "./types.ts";
