// The Nanos manifest writer: a typed guest tree plus program, argv, environment and klibs in, the text
// `mkfs` reads on stdin out. Pure: it never looks at the filesystem (the staging walk decides what the
// tree holds). Every name and value that comes from outside is written as a quoted string ("..." with
// `\\` and `\"` escaped), because bare words in the Nanos tuple syntax end at whitespace, `()[]`,
// and for names also at `:|/`, and a leading `#` starts a comment (shared/unikernel/README.md §1).
// Output is deterministic (entries sorted) so the same input gives the same bytes, e.g. for a cache key.

/**
 * A node of the guest filesystem. `host` is an absolute host path that `mkfs` reads the file from.
 * Children are a Map, not a plain object: an entry named `__proto__` (or `constructor`) is a real file
 * name in an image and must not meet object-prototype semantics.
 */
export type GuestNode =
  | { kind: "dir"; children: ReadonlyMap<string, GuestNode> }
  | { kind: "file"; host: string }
  | { kind: "symlink"; target: string };

export type GuestDir = Extract<GuestNode, { kind: "dir" }>;

export interface Manifest {
  /** The guest's "/". */
  root: GuestDir;
  /** Absolute guest path of the program. */
  program: string;
  /** The full argv, argv[0] included. */
  args: string[];
  environment: Record<string, string>;
  /** Kernel plugins by name (e.g. "tmpfs") with the absolute host path of each; loaded from the boot FS. */
  klibs?: Record<string, string>;
}

/** A manifest that cannot be written; the message names the offending path or key. */
export class ManifestError extends Error {
  override name = "ManifestError";
}

/** `s` as a tuple-syntax quoted string. */
export function quote(s: string): string {
  return `"${s.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

// A NUL ends the string inside Nanos (C strings), so it would silently truncate a name or value.
function checkText(what: string, s: string): void {
  if (s.includes("\0")) throw new ManifestError(`${what} holds a NUL byte`);
}

function checkName(path: string, name: string): void {
  if (name === "" || name === "." || name === ".." || name.includes("/")) {
    throw new ManifestError(`guest path ${path}: invalid entry name ${JSON.stringify(name)}`);
  }
  checkText(`guest path ${path}`, name);
}

function checkAbsolute(what: string, p: string): void {
  if (!p.startsWith("/")) throw new ManifestError(`${what} is not an absolute path: ${JSON.stringify(p)}`);
  checkText(what, p);
}

const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function writeNode(node: GuestNode, path: string, indent: string): string {
  switch (node.kind) {
    case "file":
      checkAbsolute(`host path of guest file ${path}`, node.host);
      return `(contents:(host:${quote(node.host)}))`;
    case "symlink":
      if (node.target === "") throw new ManifestError(`guest symlink ${path} has an empty target`);
      checkText(`target of guest symlink ${path}`, node.target);
      return `(linktarget:${quote(node.target)})`;
    case "dir":
      // An empty directory is still written: `children:()` makes it exist in the guest.
      return `(children:${entries(node, path, indent)})`;
  }
}

/** The tuple of a directory's entries, one per line, sorted by name. */
function entries(dir: GuestDir, path: string, indent: string): string {
  const names = [...dir.children.keys()].sort(byName);
  if (names.length === 0) return "()";
  const inner = `${indent}  `;
  const lines = names.map((name) => {
    const childPath = path === "/" ? `/${name}` : `${path}/${name}`;
    checkName(childPath, name);
    return `\n${inner}${quote(name)}:${writeNode(dir.children.get(name)!, childPath, inner)}`;
  });
  return `(${lines.join("")}\n${indent})`;
}

/** The manifest text for `mkfs`. Throws a ManifestError on a name, path or key it cannot express. */
export function writeManifest(m: Manifest): string {
  checkAbsolute("program", m.program);
  if (m.args.length === 0) throw new ManifestError("arguments: argv is empty (argv[0] is required)");
  for (const [i, a] of m.args.entries()) checkText(`argument ${i}`, a);
  const envKeys = Object.keys(m.environment).sort(byName);
  for (const k of envKeys) {
    if (k === "" || k.includes("="))
      throw new ManifestError(`environment: invalid name ${JSON.stringify(k)}`);
    checkText(`environment name ${k}`, k);
    checkText(`environment value of ${k}`, m.environment[k]!);
  }

  const out: string[] = [`(\n  children:${entries(m.root, "/", "  ")}`];
  out.push(`\n  program:${quote(m.program)}`);
  // One space between elements and none before "]": "[a ]" would add an empty argument.
  out.push(`\n  arguments:[${m.args.map(quote).join(" ")}]`);
  out.push(`\n  environment:(${envKeys.map((k) => `${quote(k)}:${quote(m.environment[k]!)}`).join(" ")})`);
  const klibNames = Object.keys(m.klibs ?? {}).sort(byName);
  if (klibNames.length > 0) {
    const lines = klibNames.map((name) => {
      checkName(`/klib/${name}`, name);
      const host = m.klibs![name]!;
      checkAbsolute(`host path of klib ${name}`, host);
      return `\n    ${quote(name)}:(contents:(host:${quote(host)}))`;
    });
    out.push(`\n  boot:(children:(klib:(children:(${lines.join("")}\n  ))))`);
    out.push("\n  klibs:bootfs");
  }
  out.push("\n)\n");
  return out.join("");
}
