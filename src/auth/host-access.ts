// Host-level access (issue 16 finding 7, SPEC §5.2): which parts of a service definition reach
// past the service's own corner of the node, and who may deploy them. An admin caller may; any
// other operator only when the config says `[auth] host_access = "operators"`.
//
// Host-level, for a component:
// - network: anything but "" (the engine's default), or a plain network name other than "host"
//   — so "host", "container:<other>", "ns:<path>" and any "<mode>:<options>" (slirp4netns/pasta
//   options such as allow_host_loopback) need an admin;
// - volumes: a bind mount whose host side is not <srv_root>/<service> or below it (normalised;
//   a ".." segment is refused outright, since the kernel resolves "a/.." through a symlink `a`
//   while a lexical check would not), and every named volume: a named volume is not a host path
//   the definition can be confined by (it may be another service's, or an admin's volume with a
//   bind device), so naming one is an admin decision too;
// - ports: a publication without a bind address ("8080:80") or with a wildcard one
//   ("0.0.0.0:8080:80", "[::]:…"): it listens on every interface of the node.
// Privileged-like options: the definition schema (config/service.ts, strict: unknown keys are
// errors) has no privileged, cap_add, devices, security_opt, pid/ipc/userns modes or extra run
// arguments, so none can be written; `user = "0:0"` is the seed format and stays an operator's
// choice (root inside a container confined to its own directory). A field added to the schema
// that grants host power must be listed here.
// Pure: the agent adds the one check that needs its filesystem (a symlink under
// <srv_root>/<service>/ leading out of it, roles/agent/host-access.ts).
import { posix } from "node:path";
import type { ComponentDef, ServiceDef } from "../config/service.ts";
import { isAnyAddr, parsePortSpec, parseVolumeSpec } from "../config/specs.ts";
import { AuthError, type Identity } from "./identity.ts";

/** Who may deploy host-level fields besides an admin: nobody ("admin", the default) or every operator. */
export type HostAccess = "admin" | "operators";

const NETWORK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** True when `network` is the engine's default or a named network (not a namespace mode). */
export function networkIsConfined(network: string): boolean {
  return network === "" || (NETWORK_NAME_RE.test(network) && network !== "host");
}

/** `<srv_root>/<service>` normalised, without a trailing slash. */
export function serviceDir(srvRoot: string, service: string): string {
  return posix.normalize(posix.join(srvRoot, service)).replace(/\/+$/, "");
}

/** True when a bind mount's host path is <srv_root>/<service> or below it, with no ".." segment. */
export function hostPathConfined(source: string, srvRoot: string, service: string): boolean {
  if (!source.startsWith("/") || source.split("/").includes("..")) return false;
  const p = posix.normalize(source).replace(/\/+$/, "") || "/";
  const base = serviceDir(srvRoot, service);
  return p === base || p.startsWith(`${base}/`);
}

/** The host-level fields of one component, each as `component <name>: <field>` (empty = none). */
export function componentHostLevelFields(c: ComponentDef, srvRoot: string, service: string): string[] {
  const out: string[] = [];
  const at = `component ${c.name}:`;
  if (!networkIsConfined(c.network)) out.push(`${at} network = ${JSON.stringify(c.network)}`);
  for (const v of c.volumes) {
    const spec = parseVolumeSpec(v);
    if (spec.kind === "volume")
      out.push(`${at} volume ${JSON.stringify(v)} (a named volume, not under <srv_root>/${service}/)`);
    else if (!hostPathConfined(spec.source, srvRoot, service))
      out.push(`${at} volume ${JSON.stringify(v)} (host path outside ${serviceDir(srvRoot, service)}/)`);
  }
  for (const p of c.ports) {
    const ip = parsePortSpec(p).hostIp;
    if (ip === undefined || isAnyAddr(ip))
      out.push(`${at} port ${JSON.stringify(p)} (no bind address: every interface)`);
  }
  return out;
}

/** Every host-level field of a definition (all components), in file order. */
export function hostLevelFields(def: ServiceDef, srvRoot: string): string[] {
  return def.components.flatMap((c) => componentHostLevelFields(c, srvRoot, def.name));
}

/** True for a caller who may deploy host-level fields under `allowance`. */
export function mayUseHostAccess(id: Pick<Identity, "roles">, allowance: HostAccess = "admin"): boolean {
  return id.roles.includes("admin") || allowance === "operators";
}

/**
 * Throws AuthError("permission_denied") — PERMISSION_DENIED on the wire — with one line naming the
 * service and its host-level fields when `id` may not deploy them; returns when it may (or there
 * are none).
 */
export function requireHostAccess(
  id: Pick<Identity, "name" | "roles">,
  service: string,
  fields: string[],
  allowance: HostAccess = "admin",
): void {
  if (fields.length === 0 || mayUseHostAccess(id, allowance)) return;
  throw new AuthError(
    "permission_denied",
    `service ${service}: ${fields.join("; ")}: host-level access needs an admin (${id.name} is not one; or [auth] host_access = "operators" in the config)`,
  );
}
