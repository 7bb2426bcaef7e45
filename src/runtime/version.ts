// Version of a deployed component = the tag of its image reference. Pure, so it is property-tested.

/**
 * Returns the tag of an image reference: "mcr.svc:8443/metacrypt:v1.7.0" → "v1.7.0".
 * A registry "host:port" is never taken for a tag (the tag lives in the last path component).
 * Returns "" when there is no tag: "metacrypt", "mcr.svc:8443/metacrypt", and digest-only
 * references "x@sha256:…" (a digest is not a version). "x:v1@sha256:…" keeps its tag "v1".
 * No tag is reported as "" rather than "latest" so callers can tell "unpinned" from a real tag.
 */
export function extractVersion(image: string): string {
  let ref = image.trim();
  const at = ref.indexOf("@");
  if (at >= 0) ref = ref.slice(0, at);
  const last = ref.slice(ref.lastIndexOf("/") + 1);
  const colon = last.lastIndexOf(":");
  return colon < 0 ? "" : last.slice(colon + 1);
}
