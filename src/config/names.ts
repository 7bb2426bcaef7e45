// Name and arch schemas shared by the service definition, CLI and master configs. Kept apart from
// service.ts so loading the CLI config (every `mcp` command) does not build the whole
// service-definition schema just for the node-name rule.
import { z } from "zod";

import { NAME_MAX, NAME_RE } from "./name-rules.ts";

export { NAME_MAX, NAME_RE };

const got = (v: unknown) => JSON.stringify(v);

export const nameSchema = z
  .string()
  .regex(NAME_RE, {
    error: (iss) => `expected a lowercase name matching [a-z0-9][a-z0-9-]*, got ${got(iss.input)}`,
  })
  .max(NAME_MAX, {
    error: (iss) => `expected at most ${NAME_MAX} characters (a DNS label), got ${String(iss.input).length}`,
  });

/**
 * Service names that are the daemons' own homes: with srv_root = "/srv", /srv/mcp holds the agent's
 * TLS key, config and registry and /srv/mcp-master the master's. A service by either name would
 * let push, pull, import, snapshot or a volume reach that state.
 */
export const RESERVED_SERVICE_NAMES: ReadonlySet<string> = new Set(["mcp", "mcp-master"]);

/** The one-line refusal of a reserved service name, or null. */
export function reservedServiceName(name: string): string | null {
  return RESERVED_SERVICE_NAMES.has(name)
    ? `service name ${got(name)} is reserved: <srv_root>/${name} holds the MCP daemons' own state; choose another name`
    : null;
}

/** A service's name: a name that is not one of the daemons' homes. */
export const serviceNameSchema = nameSchema.refine((n) => reservedServiceName(n) === null, {
  error: (iss) => reservedServiceName(String(iss.input)) ?? "reserved service name",
});

export const archSchema = z.enum(["amd64", "arm64"]).default("amd64");
