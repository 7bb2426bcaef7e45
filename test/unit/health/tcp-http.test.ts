// TCP and HTTP health checks against real local servers: accepted, refused, timed out (a
// listener that never accepts, with its backlog filled, leaves the next SYN unanswered),
// 2xx vs non-2xx, no redirects; waitHealthy's retry, deadline and abort.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { checkHttp, checkTcp, waitHealthy } from "../../../src/health/index.ts";
import { freePort } from "../../support/env.ts";
import { stuckListener } from "./stuck-listener.ts";

let tcp: Server;
let tcpPort = 0;
let http: ReturnType<typeof Bun.serve>;

beforeAll(async () => {
  tcp = createServer((s) => s.end());
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
  tcpPort = (tcp.address() as { port: number }).port;
  http = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/ok") return new Response("ok");
      if (path === "/nocontent") return new Response(null, { status: 204 });
      if (path === "/redirect") return Response.redirect("/ok", 302);
      if (path === "/slow") return Bun.sleep(2000).then(() => new Response("late"));
      return new Response("down", { status: 503 });
    },
  });
});

afterAll(() => {
  tcp.close();
  http.stop(true);
});

describe("checkTcp", () => {
  test("an accepting port is healthy", async () => {
    const r = await checkTcp("127.0.0.1", tcpPort, 1000);
    expect(r.healthy).toBe(true);
    expect(r.detail).toBe(`tcp 127.0.0.1:${tcpPort} accepted`);
  });

  test("a closed port is refused at once", async () => {
    const port = await freePort();
    const r = await checkTcp("127.0.0.1", port, 2000);
    expect(r.healthy).toBe(false);
    expect(r.detail).toContain("ECONNREFUSED");
    expect(r.ms).toBeLessThan(1000);
  });

  test("no answer ends at the timeout", async () => {
    const stuck = await stuckListener();
    try {
      // The first connection fills the zero-length backlog; the next SYN is never answered.
      expect((await checkTcp("127.0.0.1", stuck.port, 1000)).healthy).toBe(true);
      const t0 = performance.now();
      const r = await checkTcp("127.0.0.1", stuck.port, 300);
      expect(r.healthy).toBe(false);
      expect(r.detail).toBe(`tcp 127.0.0.1:${stuck.port} no answer within 300 ms`);
      expect(performance.now() - t0).toBeLessThan(1000);
    } finally {
      stuck.stop();
    }
  });
});

describe("checkHttp", () => {
  const url = (p: string) => `http://127.0.0.1:${http.port}${p}`;

  test("200 and 204 are healthy", async () => {
    expect((await checkHttp(url("/ok"), 1000)).healthy).toBe(true);
    const r = await checkHttp(url("/nocontent"), 1000);
    expect(r).toMatchObject({ healthy: true, detail: `http GET ${url("/nocontent")} answered 204` });
  });

  test("503 and a redirect are unhealthy (redirects are not followed)", async () => {
    expect(await checkHttp(url("/down"), 1000)).toMatchObject({ healthy: false });
    const r = await checkHttp(url("/redirect"), 1000);
    expect(r.healthy).toBe(false);
    expect(r.detail).toContain("answered 302");
  });

  test("refused and timed out are unhealthy with the reason", async () => {
    const port = await freePort();
    const refused = await checkHttp(`http://127.0.0.1:${port}/`, 1000);
    expect(refused.healthy).toBe(false);
    const slow = await checkHttp(url("/slow"), 200);
    expect(slow.healthy).toBe(false);
    expect(slow.detail).toContain("no answer within 200 ms");
    expect(slow.ms).toBeLessThan(1500);
  });
});

describe("waitHealthy", () => {
  test("keeps checking until the port starts listening", async () => {
    const port = await freePort();
    const late = createServer((s) => s.end());
    setTimeout(() => late.listen(port, "127.0.0.1"), 400);
    try {
      const r = await waitHealthy((b) => checkTcp("127.0.0.1", port, Math.min(b, 500)), {
        timeoutMs: 5000,
        intervalMs: 50,
      });
      expect(r.healthy).toBe(true);
      expect(r.attempts).toBeGreaterThan(1);
      expect(r.ms).toBeGreaterThanOrEqual(350);
    } finally {
      late.close();
    }
  });

  test("gives up at the deadline with the last reason and the attempt count", async () => {
    const port = await freePort();
    const t0 = performance.now();
    const r = await waitHealthy((b) => checkTcp("127.0.0.1", port, Math.min(b, 500)), {
      timeoutMs: 300,
      intervalMs: 50,
    });
    expect(r.healthy).toBe(false);
    expect(r.aborted).toBe(false);
    expect(r.attempts).toBeGreaterThan(1);
    expect(r.detail).toMatch(/unhealthy after \d+ attempts/);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test("an aborted signal ends the wait promptly", async () => {
    const port = await freePort();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const t0 = performance.now();
    const r = await waitHealthy((b) => checkTcp("127.0.0.1", port, Math.min(b, 500)), {
      timeoutMs: 10_000,
      intervalMs: 1000,
      signal: ac.signal,
    });
    expect(r).toMatchObject({ healthy: false, aborted: true });
    expect(performance.now() - t0).toBeLessThan(600);
  });
});
