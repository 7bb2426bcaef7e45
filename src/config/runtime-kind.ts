// A component's runtime KIND: what kind of thing runs it — a container or (a later issue) a
// unikernel. Not the node's container ENGINE (podman or docker, [agent] container_runtime): a
// node runs every "container" component with its one engine, and a definition file cannot pick
// the engine. Dependency-free so the runtime router, the registry and the schema share it.

export const RUNTIME_KINDS = ["container", "unikernel"] as const;
export type RuntimeKind = (typeof RUNTIME_KINDS)[number];
export const DEFAULT_RUNTIME_KIND: RuntimeKind = "container";

/**
 * Words earlier versions stored for the kind "container": definition files said
 * `runtime = "podman"` (the default), and registry rows of discovered containers carried the
 * node's engine ("podman" or "docker"). A definition file may still say "podman" (the schema
 * accepts it); "docker" was never accepted in a file and still is not there, since naming an
 * engine suggests a choice the file does not have.
 */
const LEGACY_WORDS: Readonly<Record<string, RuntimeKind>> = { podman: "container", docker: "container" };

/**
 * The canonical kind of a stored or received word: legacy engine words and "" (a row written
 * before the column existed) read as "container"; any other word is returned as it is, so a
 * kind this binary does not know is refused by name rather than run by another runtime.
 */
export function normalizeRuntimeKind(word: string): string {
  if (word === "") return DEFAULT_RUNTIME_KIND;
  return Object.hasOwn(LEGACY_WORDS, word) ? (LEGACY_WORDS[word] as string) : word;
}
