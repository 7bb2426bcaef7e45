// The one place that loads @peculiar/x509. It uses tsyringe, which refuses
// to load without `Reflect.getMetadata`; the `reflect-metadata` package is
// not a dependency and tsyringe needs only these few functions, so a minimal
// polyfill is installed first. Also points x509 at the global WebCrypto.

type Key = unknown;
type Store = Map<string | symbol | undefined, Map<Key, unknown>>;

const stores = new WeakMap<object, Store>();

function slot(
  target: object,
  prop: string | symbol | undefined,
  create: boolean,
): Map<Key, unknown> | undefined {
  let byProp = stores.get(target);
  if (!byProp) {
    if (!create) return undefined;
    byProp = new Map();
    stores.set(target, byProp);
  }
  let map = byProp.get(prop);
  if (!map && create) {
    map = new Map();
    byProp.set(prop, map);
  }
  return map;
}

function getOwnMetadata(key: Key, target: object, prop?: string | symbol): unknown {
  return slot(target, prop, false)?.get(key);
}

function getMetadata(key: Key, target: object, prop?: string | symbol): unknown {
  // Bounded walk up the prototype chain (metadata is inherited).
  let t: object | null = target;
  for (let depth = 0; t && depth < 64; depth++) {
    const m = slot(t, prop, false);
    if (m?.has(key)) return m.get(key);
    t = Object.getPrototypeOf(t) as object | null;
  }
  return undefined;
}

function defineMetadata(key: Key, value: unknown, target: object, prop?: string | symbol): void {
  slot(target, prop, true)?.set(key, value);
}

const R = Reflect as unknown as Record<string, unknown>;
if (typeof R.getMetadata !== "function") {
  Object.assign(R, {
    getOwnMetadata,
    getMetadata,
    defineMetadata,
    hasMetadata: (key: Key, target: object, prop?: string | symbol) =>
      getMetadata(key, target, prop) !== undefined,
    hasOwnMetadata: (key: Key, target: object, prop?: string | symbol) =>
      slot(target, prop, false)?.has(key) ?? false,
    // Decorator factory used by tslib's __metadata helper.
    metadata:
      (key: Key, value: unknown) =>
      (target: object, prop?: string | symbol): void =>
        defineMetadata(key, value, target, prop),
  });
}

// Loaded with require() *after* the polyfill above: Bun evaluates a
// statically imported CommonJS package before sibling ES modules, so a plain
// `import "@peculiar/x509"` would run tsyringe's check before the polyfill.
const lib = require("@peculiar/x509") as typeof import("@peculiar/x509");
lib.cryptoProvider.set(crypto);
export const x509 = lib;
