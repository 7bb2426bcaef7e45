// Whether a deploy has anything to do for a component (pure; deploy.ts gathers the inputs).
//
// What a deploy compares, and why:
// - the spec: a key over the component's canonical definition (its wire form, componentKey) and
//   the exact ContainerSpec the agent would run (host ports and node address included). The
//   agent writes it on every container it creates (label mcp.spec) and inspect reads it back, so
//   the comparison is against what the running container was really created from — not the
//   registry's stored spec, which `mcp sync` may have rewritten without deploying.
// - the image: the id of the image the container was created from vs the id the tag resolves to
//   in the local store now, after the deploy's pull (policy always: what the registry has now;
//   missing/never: the local copy). A tag pushed again with other content is a new id.
// A component is unchanged when its container runs, carries the same key and was created from
// the same image. Anything the agent cannot tell (no container, no label, a runtime without image
// ids) counts as changed: the deploy does what it always did. `mcp deploy --force` makes no plan
// at all (deploy.ts): every component is recreated, with no look beforehand.
import { createHash } from "node:crypto";
import { componentKey } from "../../component/proto.ts";
import type { ComponentDef } from "../../config/service.ts";
import type { ContainerSpec, ObservedState } from "../../runtime/runtime.ts";

/** Hex digits of the spec key (64 bits: a change detector, not a security boundary). */
const KEY_HEX = 16;

/** The key of running `c` as `spec` (spec.specKey and spec.owner are not part of it). */
export function specKeyOf(c: ComponentDef, spec: ContainerSpec): string {
  const { specKey: _key, owner: _owner, ...rest } = spec;
  return createHash("sha256")
    .update(componentKey(c))
    .update("\n")
    .update(JSON.stringify(rest))
    .digest("hex")
    .slice(0, KEY_HEX);
}

/** An image id as the operator reads it: "sha256:" and the first 12 hex digits. */
export function shortImageId(id: string): string {
  const m = /^(sha256:)?([0-9a-f]{12})[0-9a-f]*$/.exec(id);
  return m ? `sha256:${m[2]}…` : id;
}

/** What runs now under the component's container name, as inspect read it (null: nothing). */
export interface Running {
  state: ObservedState;
  specKey?: string | undefined;
  imageId?: string | undefined;
}

export interface PlanInput {
  running: Running | null;
  /** The key of what this deploy would run. */
  wantKey: string;
  /** The local image's id after the pull; null/undefined: not known. */
  imageId: string | null | undefined;
}

export interface Plan {
  /** Nothing to do: the container is left as it is. */
  unchanged: boolean;
  /**
   * Said to the operator: why it is left alone, or why it is recreated although its spec is the
   * same (the image behind the tag changed). "" when a redeploy needs no explanation (a new
   * component, a changed spec, a container that is not running).
   */
  reason: string;
}

export function planComponent(p: PlanInput): Plan {
  const r = p.running;
  const changed = (reason = ""): Plan => ({ unchanged: false, reason });
  if (r?.state !== "running" || !r.specKey || r.specKey !== p.wantKey) return changed();
  if (!p.imageId || !r.imageId) return changed();
  if (r.imageId !== p.imageId)
    return changed(`image digest changed: ${shortImageId(r.imageId)} -> ${shortImageId(p.imageId)}`);
  return { unchanged: true, reason: `same spec and image ${shortImageId(p.imageId)}` };
}
