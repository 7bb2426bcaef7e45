// HTTP health: a GET that answers 2xx within the timeout. Redirects are not followed — a 3xx
// usually means a login page or a wrong path, not a healthy endpoint. https URLs are checked
// without certificate verification: the question is "does the service answer", and fleet
// services present certificates from our own CA that the agent need not trust for this.
import { firstLine, type HealthResult } from "./result.ts";

export async function checkHttp(url: string, timeoutMs: number): Promise<HealthResult> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  try {
    const res = await fetch(url, {
      redirect: "manual",
      signal: AbortSignal.timeout(Math.max(1, timeoutMs)),
      tls: { rejectUnauthorized: false },
    });
    // Drain the body so the connection is released; its content does not matter.
    await res.arrayBuffer().catch(() => undefined);
    const healthy = res.status >= 200 && res.status < 300;
    return { healthy, detail: `http GET ${url} answered ${res.status}`, ms: ms() };
  } catch (err) {
    const name = (err as Error)?.name;
    const why = name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : firstLine(err);
    return { healthy: false, detail: `http GET ${url} ${why}`, ms: ms() };
  }
}
