// Name and arch schemas shared by the service definition, CLI and master configs. Kept apart from
// service.ts so loading the CLI config (every `mcp` command) does not build the whole
// service-definition schema just for the node-name rule.
import { z } from "zod";

export const NAME_RE = /^[a-z0-9][a-z0-9-]*$/;

/** A service name is a DNS label (`<service>.svc.<zone>`), node names are host names: 63 at most. */
export const NAME_MAX = 63;

const got = (v: unknown) => JSON.stringify(v);

export const nameSchema = z
  .string()
  .regex(NAME_RE, {
    error: (iss) => `expected a lowercase name matching [a-z0-9][a-z0-9-]*, got ${got(iss.input)}`,
  })
  .max(NAME_MAX, {
    error: (iss) => `expected at most ${NAME_MAX} characters (a DNS label), got ${String(iss.input).length}`,
  });

export const archSchema = z.enum(["amd64", "arm64"]).default("amd64");
