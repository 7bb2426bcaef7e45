import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parseServiceDef } from "../../../src/config/service.ts";
import {
  backendHostname,
  pickEdgeNode,
  publicRouteErrors,
  validatePublicHostname,
} from "../../../src/roles/master/edge.ts";

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
const domainArb = fc.array(label, { minLength: 2, maxLength: 3 }).map((l) => l.join("."));

describe("validatePublicHostname", () => {
  test("label matching examples", () => {
    const allowed = ["metacircular.net", "wntrmute.net"];
    expect(validatePublicHostname("metacircular.net", allowed)).toBeNull();
    expect(validatePublicHostname("x.metacircular.net", allowed)).toBeNull();
    expect(validatePublicHostname("a.b.wntrmute.net", allowed)).toBeNull();
    expect(validatePublicHostname("evilmetacircular.net", allowed)).toContain("not under an allowed domain");
    expect(validatePublicHostname("xmetacircular.net", allowed)).not.toBeNull();
    expect(validatePublicHostname("metacircular.net.evil.com", allowed)).not.toBeNull();
    expect(validatePublicHostname("X.metacircular.net", allowed)).toContain("lowercase");
    expect(validatePublicHostname("a..metacircular.net", allowed)).toContain("not a valid DNS name");
    expect(validatePublicHostname("mcq.svc.mcp.metacircular.net", allowed)).toContain("internal zone");
    expect(validatePublicHostname("x.metacircular.net", [])).toContain("no allowed domains");
  });

  test("property: accepted iff equal to an allowed domain or a dot-separated suffix of one", () => {
    fc.assert(
      fc.property(
        fc.array(domainArb, { minLength: 1, maxLength: 3 }),
        fc.array(label, { maxLength: 3 }),
        fc.string({ maxLength: 6 }),
        fc.nat(5),
        (allowed, sub, glue, i) => {
          const d = allowed[i % allowed.length]!;
          // A real subdomain (or the domain itself) is accepted.
          const host = [...sub, d].join(".");
          if (!host.endsWith("svc.mcp.metacircular.net"))
            expect(validatePublicHostname(host, allowed)).toBeNull();
          // Gluing anything but a dot before the domain is never accepted unless it happens to be
          // under another allowed domain.
          const glued = `${sub.join("")}${glue}${d}`;
          const verdict = validatePublicHostname(glued, allowed);
          const underSome = allowed.some((a) => glued === a || glued.endsWith(`.${a}`));
          if (!underSome) expect(verdict).not.toBeNull();
        },
      ),
      { numRuns: 5000 },
    );
  });
});

describe("public routes of a definition", () => {
  const def = (hostname?: string) =>
    parseServiceDef(
      {
        name: "mcq",
        components: [
          {
            name: "api",
            image: "x:1",
            routes: [{ port: 8443, mode: "l7", public: true, ...(hostname ? { hostname } : {}) }],
          },
        ],
      },
      "test",
    ).def;
  test("errors name the bad hostname; a missing hostname is refused", () => {
    expect(publicRouteErrors(def("mcq.metacircular.net"), ["metacircular.net"])).toEqual([]);
    expect(publicRouteErrors(def("mcq.evilmetacircular.net"), ["metacircular.net"])[0]).toContain(
      "mcq.evilmetacircular.net",
    );
    expect(publicRouteErrors(def(), ["metacircular.net"])[0]).toContain("needs a hostname");
    expect(backendHostname("mcq")).toBe("mcq.svc.mcp.metacircular.net");
  });
  test("edge node: healthy role edge, first by name", () => {
    expect(
      pickEdgeNode([
        { name: "e2", role: "edge", status: "healthy", containers: 0 },
        { name: "e1", role: "edge", status: "unhealthy", containers: 0 },
        { name: "w", role: "worker", status: "healthy", containers: 0 },
      ]),
    ).toEqual({ node: "e2" });
    expect(pickEdgeNode([{ name: "w", role: "worker", status: "healthy", containers: 0 }])).toEqual({
      error: "no edge node is registered",
    });
  });
});
