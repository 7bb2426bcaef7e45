// The name rule itself, without zod: the CLI config's plain check (cli-fast.ts) uses it as is.

export const NAME_RE = /^[a-z0-9][a-z0-9-]*$/;

/** A service name is a DNS label (`<service>.svc.<zone>`), node names are host names: 63 at most. */
export const NAME_MAX = 63;
