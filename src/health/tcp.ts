// TCP health: the port accepts a connection within the timeout. The socket is closed at once;
// nothing is sent, so any TCP service (databases, DNS over TCP, TLS listeners) can be checked.
import { createConnection } from "node:net";
import { firstLine, type HealthResult, hostPort } from "./result.ts";

export function checkTcp(host: string, port: number, timeoutMs: number): Promise<HealthResult> {
  const t0 = performance.now();
  const target = `tcp ${hostPort(host, port)}`;
  return new Promise((resolve) => {
    let done = false;
    const finish = (healthy: boolean, what: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ healthy, detail: `${target} ${what}`, ms: Math.round(performance.now() - t0) });
    };
    const sock = createConnection({ host, port });
    const timer = setTimeout(() => finish(false, `no answer within ${timeoutMs} ms`), Math.max(1, timeoutMs));
    sock.once("connect", () => finish(true, "accepted"));
    sock.once("error", (err) => finish(false, firstLine(err)));
  });
}
