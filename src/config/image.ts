// Image references, read by one rule everywhere: the definition checks (is the image pinned?), the
// agent's version of a deployed component, `mcp build`'s registry lookups and boot's "is this the
// same image" comparison. The grammar is podman's and docker's:
//   [registry/]repository[:tag][@digest]
// The first path segment is a registry only when there is a "/" after it and it looks like a host
// (has a "." or a ":port", or is "localhost"); otherwise the image is on docker.io, where a single
// name lives under library/. The tag is after the last ":" of the last path segment, so a
// registry's port is never taken for a tag. Pure, so it is property-tested.

export interface ImageRef {
  /** Registry host[:port]; "docker.io" for unqualified names. */
  registry: string;
  /** Repository path inside the registry ("team/web", "library/busybox"). */
  repository: string;
  /** "" when the reference names none (podman then pulls :latest unless a digest pins it). */
  tag: string;
  /** "sha256:…", or "" when there is none. */
  digest: string;
}

export function parseImageRef(image: string): ImageRef {
  let rest = image.trim();
  let digest = "";
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  let tag = "";
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  const slash = rest.indexOf("/");
  const first = slash >= 0 ? rest.slice(0, slash) : "";
  let registry = "docker.io";
  if (slash >= 0 && (first.includes(".") || first.includes(":") || first === "localhost")) {
    registry = first;
    rest = rest.slice(slash + 1);
  }
  const repository = registry === "docker.io" && !rest.includes("/") ? `library/${rest}` : rest;
  return { registry, repository, tag, digest };
}

/**
 * The version of a deployed component: its image's tag ("mcr.svc:8443/metacrypt:v1.7.0" → "v1.7.0").
 * "" when there is no tag — a digest is not a version; "x:v1@sha256:…" keeps "v1". No tag is ""
 * rather than "latest" so callers can tell "unpinned" from a real tag.
 */
export function extractVersion(image: string): string {
  return parseImageRef(image).tag;
}

/** What pins an image: its digest, else its tag; undefined when it has neither. */
export function imagePin(image: string): string | undefined {
  const r = parseImageRef(image);
  return r.digest || r.tag || undefined;
}

/** The full reference with podman's defaults filled in (docker.io/library/, :latest without a digest). */
export function canonicalImage(image: string): string {
  const r = parseImageRef(image);
  const tag = r.tag ? `:${r.tag}` : r.digest ? "" : ":latest";
  return `${r.registry}/${r.repository}${tag}${r.digest ? `@${r.digest}` : ""}`;
}
