// "Did you mean …?" for names an operator typed: commands, options, config keys, node names.
// Small and dependency-free: edit distance with adjacent transpositions ("deplyo" is one edit
// from "deploy"), plus a unique prefix ("dep" → "deploy").

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  // Three rows are enough: the current one, the previous one (edits) and the one before (swaps).
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, before[j - 2]! + 1);
      cur.push(d);
    }
    before = prev;
    prev = cur;
  }
  return prev[b.length]!;
}

/** How many edits still look like a typo of a word this long (short words allow one). */
function allowedEdits(word: string): number {
  return Math.max(1, Math.floor(word.length / 3));
}

/**
 * The candidate `word` most likely is a typo of, or undefined when none is close: the nearest by
 * edit distance (first in the given order on a tie), else the only candidate `word` is a prefix
 * of (3 characters at least). Case is ignored; `word` itself is never suggested.
 */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const w = word.toLowerCase();
  const all = [...new Set(candidates)].filter((c) => c !== word);
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of all) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  if (best !== undefined && bestD <= allowedEdits(w) && bestD < best.length) return best;
  if (w.length >= 3) {
    const prefixed = all.filter((c) => c.toLowerCase().startsWith(w));
    if (prefixed.length === 1) return prefixed[0];
  }
  return undefined;
}

/** ` (did you mean "x"?)`, or "" when nothing is close: appended to an error line. */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates);
  return c === undefined ? "" : ` (did you mean ${JSON.stringify(c)}?)`;
}
